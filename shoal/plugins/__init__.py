"""Plugins: folders (or git repositories) bundling skills, agent definitions, commands, MCP
servers and hooks, in Claude Code's layout::

    my-plugin/
      .claude-plugin/plugin.json   the manifest: name, version, description, ... and
                                   optional paths of components kept elsewhere
      skills/NAME/SKILL.md         skills (the Agent Skills format)
      agents/*.md                  agent definitions
      commands/*.md                prompt templates, run as /NAME (``$ARGUMENTS``)
      .mcp.json                    MCP servers (``${CLAUDE_PLUGIN_ROOT}`` is the folder)
      hooks/hooks.json             hooks

:mod:`shoal.plugins.manifest` reads the manifest, :mod:`shoal.plugins.store` installs,
lists and approves plugins and hands their parts to the skill catalog, the MCP server
list, the command catalog and the agent loader; :mod:`shoal.plugins.hooks` runs hooks.
"""
