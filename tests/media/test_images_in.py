"""Images in: a photo reaches a vision model as pixels in the provider's own format; a model
that cannot see gets a vision model's description; with no vision model, the person is told
once. Only the turn a photo came with carries its pixels."""

from __future__ import annotations

import base64
from typing import Any

from bot.messages import Attachment
from tests.fakes.llm import FakeLLM
from tests.media.conftest import running, settled
from tests.media.files import image_size, png

PHOTO = Attachment("image", "photo-1", "photo.png", "image/png", None)


def _image_urls(body: dict[str, Any]) -> list[str]:
    return [
        part["image_url"]["url"]
        for message in body["messages"]
        if isinstance(message["content"], list)
        for part in message["content"]
        if part["type"] == "image_url"
    ]


async def test_a_photo_reaches_an_openai_model_as_an_image_url_part(
    make_config: Any, fake: FakeLLM
) -> None:
    fake.push("A red rectangle.", "You sent a red rectangle earlier.")
    async with running(make_config, fake, models={"chat": ["oa:gpt-4o-mini"]}) as (gw, channel):
        channel.files["photo-1"] = png(3000, 2000)
        await channel.push("what is this?", parts=(PHOTO,))
        assert await channel.wait_for_messages(1) == ["A red rectangle."]
        await settled(gw)
        await channel.push("and what was it again?")
        await channel.wait_for_messages(2)
    first, second = fake.calls(path="/v1/chat/completions")
    content = first.body["messages"][-1]["content"]
    assert content[0]["type"] == "text" and content[0]["text"].startswith("what is this?")
    [url] = _image_urls(first.body)
    assert url.startswith("data:image/jpeg;base64,")
    pixels = base64.b64decode(url.removeprefix("data:image/jpeg;base64,"))
    assert image_size(pixels) == (1568, 1045)  # downscaled to the longest side allowed
    # the next turn names the image, and uploads no pixels again
    assert _image_urls(second.body) == []
    earlier = second.body["messages"][-3]
    assert earlier["role"] == "user" and "photo.png, 3000×2000" in earlier["content"]


async def test_a_photo_reaches_an_anthropic_model_as_a_base64_image_block(
    make_config: Any, fake: FakeLLM
) -> None:
    fake.push("A green square.")
    async with running(make_config, fake, models={"chat": ["claude:claude-3-5-sonnet-latest"]}) as (
        _gw,
        channel,
    ):
        channel.files["photo-1"] = png(400, 400, (0, 200, 0))
        await channel.push("describe it", parts=(PHOTO,))
        assert await channel.wait_for_messages(1) == ["A green square."]
    [call] = fake.calls(path="/v1/messages")
    blocks = call.body["messages"][-1]["content"]
    image, text = blocks
    assert image["type"] == "image" and image["source"]["type"] == "base64"
    assert image["source"]["media_type"] == "image/jpeg"
    assert image_size(base64.b64decode(image["source"]["data"])) == (400, 400)
    assert text["type"] == "text" and text["text"].startswith("describe it")


async def test_a_model_without_vision_gets_the_vision_chain_s_description(
    make_config: Any, fake: FakeLLM
) -> None:
    fake.push("A photo of a red rectangle with the word SALE on it.", model="gpt-4o")
    fake.push("That is a sale sign.", model="llama3.2")
    models = {"chat": ["oa:llama3.2"], "vision": ["oa:gpt-4o"]}
    async with running(make_config, fake, models=models) as (_gw, channel):
        channel.files["photo-1"] = png(800, 600)
        await channel.push("what does it say?", parts=(PHOTO,))
        assert await channel.wait_for_messages(1) == ["That is a sale sign."]
    [seen] = fake.calls(model="gpt-4o")
    assert len(_image_urls(seen.body)) == 1
    assert "what does it say?" in str(seen.body["messages"])  # the question helps the description
    [chat] = fake.calls(model="llama3.2")
    assert _image_urls(chat.body) == []
    user = chat.body["messages"][-1]["content"]
    assert user.startswith("what does it say?")
    assert "word SALE on it" in user and "photo.png" in user


async def test_a_person_whose_own_model_sees_sends_it_the_pixels(
    make_config: Any, fake: FakeLLM
) -> None:
    fake.push("A red rectangle.", model="gpt-4o")
    models = {"chat": ["oa:llama3.2", "oa:gpt-4o"]}
    async with running(make_config, fake, models=models) as (_gw, channel):
        channel.files["photo-1"] = png(800, 600)
        await channel.push("/model oa:gpt-4o")
        await channel.wait_for_messages(1)
        await channel.push("what is this?", parts=(PHOTO,))
        assert (await channel.wait_for_messages(2))[-1] == "A red rectangle."
    [seen] = fake.calls(model="gpt-4o")
    assert len(_image_urls(seen.body)) == 1
    assert fake.calls(model="llama3.2") == []


async def test_without_any_vision_model_the_person_is_told_once(
    make_config: Any, fake: FakeLLM
) -> None:
    fake.default_text = "I cannot see it."
    async with running(make_config, fake, models={"chat": ["oa:llama3.2"]}) as (gw, channel):
        channel.files["photo-1"] = png(100, 100)
        await channel.push("look", parts=(PHOTO,))
        texts = await channel.wait_for_messages(2)
        await settled(gw)
        await channel.push("and this one", parts=(PHOTO,))
        texts = await channel.wait_for_messages(3)
        await settled(gw, delivery="d2")
    assert texts[0].startswith("I can't see images") and "[models] vision" in texts[0]
    assert texts[1:] == ["I cannot see it.", "I cannot see it."]
    for call in fake.calls(path="/v1/chat/completions"):
        assert _image_urls(call.body) == []
        assert "not shown; no model here can see images" in call.body["messages"][-1]["content"]


async def test_several_large_photos_in_one_message_reach_the_model_together(
    make_config: Any, fake: FakeLLM
) -> None:
    from tests.media.files import jpeg

    fake.push("Three noisy photos.")
    parts = tuple(
        Attachment("image", f"photo-{i}", f"p{i}.jpg", "image/jpeg", None) for i in range(3)
    )
    async with running(make_config, fake, models={"chat": ["oa:gpt-4o-mini"]}) as (_gw, channel):
        for i in range(3):
            channel.files[f"photo-{i}"] = jpeg(2400, 1800)
        await channel.push("compare these", parts=parts)
        assert await channel.wait_for_messages(1) == ["Three noisy photos."]
    [call] = fake.calls(path="/v1/chat/completions")
    urls = _image_urls(call.body)
    # each stays under its own cap; together the request is well over a megabyte
    assert len(urls) == 3 and sum(len(url) for url in urls) > 1_000_000
