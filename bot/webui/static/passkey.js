// Passkeys: set up with one instead of a password (the first-run page), add one (the panel's
// Passkeys page) and sign in with one (the login page). The server issues the options and
// checks the answers; this only hands them to the browser.
"use strict";

(function () {
  const supported = !!(window.PublicKeyCredential && PublicKeyCredential.parseCreationOptionsFromJSON);

  async function post(url, token, body) {
    const resp = await fetch(url, {
      method: "POST",
      headers: { "X-CSRF-Token": token, "Content-Type": "application/json" },
      body: JSON.stringify(body || {}),
    });
    if (!resp.ok) throw new Error(await resp.text());
    return resp;
  }

  function wire(button, status, run) {
    if (!button || !supported) return;
    button.hidden = false;
    button.addEventListener("click", async () => {
      status.hidden = true;
      try {
        await run();
      } catch (e) {
        status.textContent = e.message || String(e);
        status.hidden = false;
      }
    });
  }

  async function register(url, token, body) {
    const options = await (await post(url + "/options", token, body)).json();
    const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(options);
    const credential = await navigator.credentials.create({ publicKey: publicKey });
    await post(url, token, credential.toJSON());
  }

  const add = document.getElementById("passkey-add");
  wire(add, document.getElementById("passkey-status"), async () => {
    await register("/passkey/register", add.dataset.csrf);
    location.href = "/panel/passkeys?note=passkey+added";
  });

  const setup = document.getElementById("passkey-setup");
  wire(setup, document.getElementById("passkey-setup-error"), async () => {
    const code = document.getElementById("code");
    if (!code.value.trim()) throw new Error("Enter the setup code first.");
    const token = document.querySelector("#welcome input[name=csrf]").value;
    await register("/welcome/passkey", token, { code: code.value });
    location.href = "/welcome/done";
  });

  const signIn = document.getElementById("passkey-signin");
  wire(signIn, document.getElementById("passkey-error"), async () => {
    const token = signIn.dataset.csrf;
    const options = await (await post("/passkey/login/options", token)).json();
    const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(options);
    const credential = await navigator.credentials.get({ publicKey: publicKey });
    await post("/passkey/login", token, credential.toJSON());
    location.href = "/";
  });
})();
