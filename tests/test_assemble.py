"""Turning a target's answer into a job's result and artifacts (foreman/assemble.py)."""

from __future__ import annotations

import json

from foreman.assemble import assemble


def chat_lines(*parts: str) -> list[bytes]:
    lines = [json.dumps({"model": "m", "message": {"role": "assistant", "content": p}, "done": False}) for p in parts]
    final = {"model": "m", "message": {"role": "assistant", "content": ""}, "done": True, "eval_count": len(parts)}
    return [line.encode() for line in lines] + [json.dumps(final).encode()]


def test_a_streamed_chat_becomes_the_non_streamed_answer() -> None:
    out = assemble("/api/chat", b"\n".join(chat_lines("Hel", "lo", "!")) + b"\n")
    assert out.error is None and out.eval_count == 3
    assert out.result is not None and out.result["message"] == {"role": "assistant", "content": "Hello!"}
    assert out.result["done"] is True
    artifacts = {a.name: a.data for a in out.artifacts}
    assert artifacts["completion"] == b"Hello!"
    assert json.loads(artifacts["response"]) == out.result


def test_a_line_that_is_not_json_is_skipped_not_fatal() -> None:
    lines = chat_lines("a", "b")
    raw = b"\n".join([lines[0], b"this is not json", b"", lines[1], b"[1, 2]", lines[2]])
    out = assemble("/api/chat", raw)
    assert out.result is not None and out.result["message"]["content"] == "ab"


def test_a_generate_answer_in_one_object() -> None:
    raw = json.dumps({"model": "m", "response": "The sky", "thinking": "hmm", "done": True}).encode()
    out = assemble("/api/generate", raw)
    assert out.result is not None and (out.result["response"], out.result["thinking"]) == ("The sky", "hmm")
    assert {a.name for a in out.artifacts} == {"completion", "thinking", "response"}


def test_an_error_inside_a_200_answer_is_the_outcome() -> None:
    raw = b"\n".join([*chat_lines("a")[:1], b'{"error":"an error was encountered while running the model"}'])
    assert assemble("/api/chat", raw).error == "an error was encountered while running the model"
    assert assemble("/api/chat", b"").error == "the target sent no response"


def test_openai_server_sent_events() -> None:
    chunk = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "Hi"}}]}
    usage = {"object": "chat.completion.chunk", "choices": [], "usage": {"total_tokens": 3}}
    raw = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in (chunk, chunk, usage)) + b"data: [DONE]\n\n"
    out = assemble("/v1/chat/completions", raw)
    assert out.result is not None and out.result["choices"][0]["message"]["content"] == "HiHi"
    assert out.result["usage"] == {"total_tokens": 3}


def test_a_long_answer_is_whole_across_parse_batches_and_a_bad_line_costs_only_itself() -> None:
    # ~300 KiB: several of assemble's 64 KiB batches, with a broken line inside one of them.
    parts = [f"<{i:05d}>" for i in range(4000)]
    lines = chat_lines(*parts)
    lines.insert(2500, b'{"message": {"content": "never closed"')
    out = assemble("/api/chat", b"\n".join(lines) + b"\n")
    assert out.result is not None and out.result["message"]["content"] == "".join(parts)
    assert out.result["done"] is True and out.eval_count == 4000
