"""Read a YAML document keeping the line of every key, so problems can point at it.

PyYAML's composer already knows where each node starts; we walk the node tree next to the
constructed data and record ``dotted.path -> line``. Duplicate keys, which PyYAML silently
resolves to the last one, are reported because a user editing the first copy would otherwise
see no effect.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

__all__ = ["YamlDocument", "YamlError", "parse_yaml"]


class YamlError(Exception):
    """The text is not YAML at all; ``line`` is 1-based."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


@dataclass
class YamlDocument:
    data: Any
    lines: dict[str, int] = field(default_factory=dict)
    duplicates: list[tuple[str, int]] = field(default_factory=list)

    def line_of(self, path: str) -> int | None:
        """Line of ``path`` or of its nearest parent that exists in the file."""
        while path:
            if path in self.lines:
                return self.lines[path]
            cut = max(path.rfind("."), path.rfind("["))
            path = path[:cut] if cut > 0 else ""
        return None


def parse_yaml(text: str) -> YamlDocument:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        reason = error.problem or str(error)
        raise YamlError(reason, mark.line + 1 if mark else None) from None
    except yaml.YAMLError as error:
        raise YamlError(str(error), None) from None
    finally:
        loader.dispose()
    document = YamlDocument(data)
    if node is not None:
        _record(node, "", document)
    return document


def _record(node: yaml.Node, path: str, document: YamlDocument) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = f"{path}.{key}" if path else key
            if key in seen:
                document.duplicates.append((child, key_node.start_mark.line + 1))
            seen.add(key)
            document.lines[child] = key_node.start_mark.line + 1
            _record(value_node, child, document)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = f"{path}[{index}]"
            document.lines[child] = item.start_mark.line + 1
            _record(item, child, document)
