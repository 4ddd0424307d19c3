"""packyd: serve Claude Code (Anthropic Messages API) from Packycode's Codex relay
(OpenAI Responses API), as a systemd service."""

__version__ = "0.1.0"
