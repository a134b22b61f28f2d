"""Ollama's request structs, as `api/types.go` and `openai/openai.go` declare them (v0.33).

Only the fields whose type Go's decoder checks in a way worth copying are declared; the rest
are unknown here, and ignored, as Go ignores unknown keys. `foreman/go_unmarshal.py` checks a
decoded body against them (docs/adr/0023).
"""

from __future__ import annotations

from foreman.go_unmarshal import (
    ANY,
    BOOL,
    BOOL_PTR,
    DURATION,
    FLOAT32,
    FLOAT32_PTR,
    FLOAT64_PTR,
    IMAGES,
    INT,
    INT_PTR,
    OPTIONS,
    RAW,
    STRING,
    STRING_PTR,
    THINK,
    Struct,
    message_of,
    slice_of,
    struct_of,
)

_TOOL = Struct(
    "api.Tool",
    {
        "type": STRING,
        "items": ANY,
        "function": struct_of(
            Struct(
                "api.ToolFunction",
                {
                    "name": STRING,
                    "description": STRING,
                    "parameters": struct_of(
                        Struct(
                            "api.ToolFunctionParameters",
                            {"type": STRING, "$defs": ANY, "items": ANY, "required": slice_of(STRING, "[]string")},
                        )
                    ),
                },
            )
        ),
    },
)
_TOOL_CALL = Struct(
    "api.ToolCall",
    {
        "id": STRING,
        "function": struct_of(Struct("api.ToolCallFunction", {"index": INT, "name": STRING, "arguments": ANY})),
    },
)
_MESSAGE_TYPE = message_of(
    Struct(
        "api.Message",
        {
            "role": STRING,
            "content": STRING,
            "thinking": STRING,
            "images": IMAGES,
            "tool_calls": slice_of(struct_of(_TOOL_CALL), "[]api.ToolCall"),
            "tool_name": STRING,
            "tool_call_id": STRING,
        },
    ),
)
_COMMON = {
    "model": STRING,
    "stream": BOOL_PTR,
    "format": RAW,
    "keep_alive": DURATION,
    "options": OPTIONS,
    "think": THINK,
    "truncate": BOOL_PTR,
    "shift": BOOL_PTR,
    "_debug_render_only": BOOL,
    "logprobs": BOOL,
    "top_logprobs": INT,
}
CHAT_REQUEST = Struct(
    "api.ChatRequest",
    {**_COMMON, "messages": slice_of(_MESSAGE_TYPE, "[]api.Message"), "tools": slice_of(struct_of(_TOOL), "api.Tools")},
)
GENERATE_REQUEST = Struct(
    "api.GenerateRequest",
    {
        **_COMMON,
        "prompt": STRING,
        "suffix": STRING,
        "system": STRING,
        "template": STRING,
        "context": slice_of(INT, "[]int"),
        "raw": BOOL,
        "images": IMAGES,
    },
)
EMBED_REQUEST = Struct(
    "api.EmbedRequest",
    {
        "model": STRING,
        "input": ANY,
        "keep_alive": DURATION,
        "truncate": BOOL_PTR,
        "dimensions": INT,
        "options": OPTIONS,
    },
)
EMBEDDING_REQUEST = Struct(
    "api.EmbeddingRequest", {"model": STRING, "prompt": STRING, "keep_alive": DURATION, "options": OPTIONS}
)

_STREAM_OPTIONS = struct_of(Struct("openai.StreamOptions", {"include_usage": BOOL}), nullable=True)
_OPENAI_MESSAGE = Struct(
    "openai.Message",
    {
        "role": STRING,
        "content": ANY,
        "reasoning": STRING,
        "tool_calls": slice_of(
            struct_of(Struct("openai.ToolCall", {"id": STRING, "index": INT, "type": STRING})), "[]openai.ToolCall"
        ),
        "name": STRING,
        "tool_call_id": STRING,
    },
)
OPENAI_CHAT_REQUEST = Struct(
    "openai.ChatCompletionRequest",
    {
        "model": STRING,
        "messages": slice_of(struct_of(_OPENAI_MESSAGE), "[]openai.Message"),
        "stream": BOOL,
        "stream_options": _STREAM_OPTIONS,
        "max_tokens": INT_PTR,
        "seed": INT_PTR,
        "stop": ANY,
        "temperature": FLOAT64_PTR,
        "frequency_penalty": FLOAT64_PTR,
        "presence_penalty": FLOAT64_PTR,
        "top_p": FLOAT64_PTR,
        "response_format": struct_of(Struct("openai.ResponseFormat", {"type": STRING}), nullable=True),
        "tools": slice_of(struct_of(_TOOL), "[]api.Tool"),
        "reasoning": struct_of(Struct("openai.Reasoning", {"effort": STRING}), nullable=True),
        "reasoning_effort": STRING_PTR,
        "logprobs": BOOL_PTR,
        "top_logprobs": INT,
        "_debug_render_only": BOOL,
    },
)
OPENAI_COMPLETION_REQUEST = Struct(
    "openai.CompletionRequest",
    {
        "model": STRING,
        "prompt": STRING,
        "frequency_penalty": FLOAT32,
        "max_tokens": INT_PTR,
        "presence_penalty": FLOAT32,
        "seed": INT_PTR,
        "stop": ANY,
        "stream": BOOL,
        "stream_options": _STREAM_OPTIONS,
        "temperature": FLOAT32_PTR,
        "top_p": FLOAT32,
        "suffix": STRING,
        "logprobs": INT_PTR,
        "_debug_render_only": BOOL,
    },
)
OPENAI_EMBED_REQUEST = Struct(
    "openai.EmbedRequest", {"input": ANY, "model": STRING, "dimensions": INT, "encoding_format": STRING}
)
