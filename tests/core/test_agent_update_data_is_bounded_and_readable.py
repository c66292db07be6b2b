"""What an agent's updates become: ACP content as readable text (wrapped content unwrapped, diffs,
terminals, placeholders for non-text blocks, never their payload) and AgentUpdate data that is
JSON and bounded however big or deep the agent's update is."""

from __future__ import annotations

import json

from runtime.core.updates import MAX_CHARS, bounded, content_text


def test_tool_call_content_items_become_readable_text():
    content = [
        {"type": "content", "content": {"type": "text", "text": "ran the tests"}},
        {"type": "diff", "path": "/ws/a.py", "oldText": "x = 1\ny = 2\n", "newText": "x = 1\ny = 3\n"},
        {"type": "diff", "path": "/ws/new.txt", "newText": "fresh"},
        {"type": "terminal", "terminalId": "term-7"},
    ]
    assert content_text(content).split("\n") == [
        "ran the tests",
        "--- /ws/a.py", "+++ /ws/a.py", "@@ -1,2 +1,2 @@", " x = 1", "-y = 2", "+y = 3",
        "new file /ws/new.txt", "fresh",
        "[terminal term-7]",
    ]


def test_non_text_blocks_are_short_placeholders_without_their_payload():
    blocks = [
        {"type": "image", "mimeType": "image/png", "data": "AAAA" * 1000},
        {"type": "audio", "mimeType": "audio/wav", "data": "BBBB" * 1000},
        {"type": "resource_link", "name": "spec", "uri": "file:///ws/spec.md"},
        {"type": "resource", "resource": {"uri": "file:///ws/a.py", "text": "print(1)"}},
        {"type": "future_block", "x": 1},
    ]
    assert [content_text(b) for b in blocks] == [
        "[image image/png]", "[audio audio/wav]", "[resource_link spec file:///ws/spec.md]",
        "[resource file:///ws/a.py]", ""]


def test_update_data_is_json_and_bounded():
    huge = {"cost": float("nan"),
            "entries": [{"content": "x" * 10_000, "priority": "high", "_meta": {"trace": 1}}] * 1000}
    deep: dict = {}
    node = deep
    for _ in range(50):
        node["d"] = {}
        node = node["d"]
    out = bounded({**huge, "deep": deep})
    text = json.dumps(out, allow_nan=False)
    assert len(text) < MAX_CHARS + 2000, len(text)
    assert out["cost"] is None and "_meta" not in out["entries"][0]
    assert out["entries"][0]["content"].endswith("…") and len(out["entries"]) <= 101
    assert out["entries"][-1] == "…" and out["…"] == "truncated"  # the cuts are marked
    small = {"entries": [{"content": "read", "priority": "low", "status": "pending"}]}
    assert bounded(small) == small
