"""Skills: Markdown procedures the model reads when a task calls for one (AgentSkills format).

    library = SkillLibrary(config.skills, home)        # the folders on disk
    runtime = SkillRuntime(library, config=config, tool_names=registry.names,
                           on_reload=swap_into_deps)    # the live set, reloaded on change
    await runtime.start(watch=True)

Only names and one-line descriptions go into the system prompt; `use_skill` returns a
skill's instructions. What the model writes waits as a draft for the owner's approval.
"""
