"""The `[skills]` section of the config file."""

from __future__ import annotations

from pydantic import Field

from bot.config_base import Section

#: where the owner's skills folder appears inside the sandbox (read-only); here, not in
#: tools.py, because the sandbox's choice needs it before ready and the skills' library
#: (with yaml) loads after
SANDBOX_SKILLS_DIR = "/skills"


class SkillsConfig(Section):
    enabled: bool = True
    #: the owner's skills, one folder each with a SKILL.md (relative paths are under the home)
    dir: str = "skills"
    #: skills the model wrote, waiting for the owner's approval (never mounted, never run)
    drafts_dir: str = "skill_drafts"
    #: offer the skills shipped with Decapod (an owner's skill of the same name replaces one)
    bundled: bool = True
    #: a skill the model writes is enabled at once instead of waiting as a draft
    auto_enable: bool = False
    #: the skill list in the system prompt stays within this many bytes: past it, skills are
    #: named without their description, then only counted (use_skill still finds them)
    prompt_budget_bytes: int = Field(default=320, ge=0)
    #: a SKILL.md over this size is skipped and reported as broken
    max_skill_bytes: int = Field(default=64 * 1024, ge=1024)
    #: `decapod skills install` refuses a folder or archive that unpacks to more than this
    max_install_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    max_install_files: int = Field(default=500, ge=1)
    #: watch the skills folder and reload what changes
    watch: bool = True
    #: a change is reloaded once the folder has been quiet this long
    debounce_ms: int = Field(default=50, ge=1, le=5000)
