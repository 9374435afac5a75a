"""Fake Anthropic Messages API: `POST /v1/messages`, enough for the official SDK.

Without a script it answers deterministically: with the demo brain on (`Recorder(demo_brain=True)`,
`serve --demo-brain`), a request offering the assistant's tools gets the demo brain's tool calls
(`demo_brain`, labelled "[demo]"); otherwise a `tool_use` of the forced
(or first) tool with an input generated from the tool's JSON schema, or a friendly Spanish text.
Tool calls are `tool_use` content blocks (id, name, input) and the answer's stop_reason is
"tool_use"; a `tool_result` block in a request must answer a `tool_use` id of the assistant turn
just before it, first in its user turn (https://docs.anthropic.com/claude/docs/legacy-tool-use,
https://platform.claude.com/docs/en/agents-and-tools/tool-use/parallel-tool-use). Token counts are
estimates (4 characters a token); prompt caching is simulated per `cache_control` breakpoint so
that the second call with the same prefix reports `cache_read_input_tokens`.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from tistis_sandbox import demo_brain
from tistis_sandbox.meta import random_token
from tistis_sandbox.recorder import Recorder, Step, apply_delay
from tistis_sandbox.schema_sample import sample_from_schema
from tistis_sandbox.wire import Answer, Call

ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
ERROR_MESSAGES: dict[str, str] = {
    "rate_limit_error": "Number of request tokens has exceeded your per-minute rate limit",
    "api_error": "Internal server error",
    "overloaded_error": "Overloaded",
    "authentication_error": "invalid x-api-key",
}
QUOTE_MAX = 200


def _id(prefix: str) -> str:
    return prefix + "01" + random_token(22)


# json.dumps(value, ensure_ascii=False[, sort_keys=True]) as reusable encoders; a parsed
# request has no cycles to check for.
_PLAIN = json.JSONEncoder(ensure_ascii=False, check_circular=False)
_SORTED = json.JSONEncoder(ensure_ascii=False, check_circular=False, sort_keys=True)


def estimate_tokens(value: Any) -> int:
    text = value if isinstance(value, str) else _PLAIN.encode(value)
    return max(1, len(text) // 4)


def error(status: int, message: str | None = None, *, error_type: str | None = None,
          headers: dict[str, str] | None = None) -> Answer:
    etype = error_type or ERROR_TYPES.get(status, "api_error" if status >= 500 else
                                          "invalid_request_error")
    req_id = _id("req_")
    all_headers = {"request-id": req_id, **(headers or {})}
    if status == 429 and not any(k.lower() == "retry-after" for k in all_headers):
        all_headers["retry-after"] = "1"
    body = {
        "type": "error",
        "error": {"type": etype, "message": message or ERROR_MESSAGES.get(etype, etype)},
        "request_id": req_id,
    }
    return Answer(status, body, all_headers)


class Invalid(Exception):
    pass


def validate(body: Any) -> None:
    if not isinstance(body, dict):
        raise Invalid("Request body must be a JSON object")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise Invalid("model: Field required")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise Invalid("max_tokens: Field required and must be a positive integer")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise Invalid("messages: at least one message is required")
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") not in ("user", "assistant"):
            raise Invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        content = msg.get("content")
        if isinstance(content, list):
            if any(not isinstance(b, dict) or "type" not in b for b in content):
                raise Invalid(f"messages.{i}.content: each block needs a type")
            for j, block in enumerate(content):
                _validate_source(block, f"messages.{i}.content.{j}")
        elif not isinstance(content, str):
            raise Invalid(f"messages.{i}.content: Input should be a string or a list of blocks")
    _check_tool_results(messages)
    temperature = body.get("temperature")
    if temperature is not None and not 0 <= temperature <= 1:
        raise Invalid("temperature: Input should be less than or equal to 1")
    if body.get("stream"):
        raise Invalid("stream: streaming is not supported by the sandbox")
    tools = body.get("tools") or []
    names = {t.get("name") for t in tools if isinstance(t, dict)}
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or not tool.get("name"):
            raise Invalid(f"tools.{i}.name: Field required")
        if "type" not in tool and not isinstance(tool.get("input_schema"), dict):
            raise Invalid(f"tools.{i}.custom.input_schema: Field required")
    choice = body.get("tool_choice")
    if choice is not None:
        if not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool",
                                                                       "none"):
            raise Invalid("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'")
        if choice["type"] == "tool" and choice.get("name") not in names:
            raise Invalid(f"tool_choice: tool '{choice.get('name')}' not found in tools")


# Vision and PDF support: base64 images of these types, at most 5 MB of base64 each; PDFs as
# `document` blocks (application/pdf, or plain text).
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
IMAGE_MAX_BASE64 = 5 * 1024 * 1024


def _validate_source(block: dict[str, Any], where: str) -> None:
    kind = block["type"]
    if kind not in ("image", "document"):
        return
    source = block.get("source")
    if not isinstance(source, dict) or source.get("type") not in ("base64", "url", "text"):
        raise Invalid(f"{where}.source: Input tag does not match 'base64', 'url' or 'text'")
    if source["type"] != "base64":
        return
    data, media_type = source.get("data"), source.get("media_type")
    allowed = IMAGE_TYPES if kind == "image" else ("application/pdf",)
    if media_type not in allowed:
        raise Invalid(f"{where}.source.media_type: Input should be {' or '.join(allowed)}")
    if not isinstance(data, str) or not data:
        raise Invalid(f"{where}.source.data: Field required")
    if kind == "image" and len(data) > IMAGE_MAX_BASE64:
        raise Invalid(f"{where}.image.source.base64: image exceeds 5 MB maximum: "
                      f"{len(data)} bytes > {IMAGE_MAX_BASE64} bytes")
    try:
        base64.b64decode(data, validate=True)
    except ValueError:
        raise Invalid(f"{where}.source.data: invalid base64 data") from None


def attachments_seen(body: dict[str, Any]) -> list[str]:
    """The kinds of the files in the patient's last turn (the demo says what it looked at)."""
    for msg in reversed(body["messages"]):
        if msg["role"] == "user":
            content = msg["content"]
            if isinstance(content, str):
                return []
            return [b["type"] for b in content if b.get("type") in ("image", "document")]
    return []


def _check_tool_results(messages: list[Any]) -> None:
    """The API's own rule: each tool_result answers a tool_use of the previous assistant turn,
    and tool results come before any other block of their user turn."""
    for i, msg in enumerate(messages):
        content = msg["content"]
        if not isinstance(content, list):
            continue
        results = [b for b in content if b.get("type") == "tool_result"]
        if not results:
            continue
        if msg["role"] != "user":
            raise Invalid(f"messages.{i}: tool_result blocks are only allowed in user turns")
        if any(b.get("type") != "tool_result" for b in content[:len(results)]):
            raise Invalid(f"messages.{i}: tool_result blocks must come first in the content")
        before = messages[i - 1]["content"] if i else []
        asked = {b.get("id") for b in before if isinstance(b, dict)
                 and b.get("type") == "tool_use"} if isinstance(before, list) else set()
        for b in results:
            if b.get("tool_use_id") not in asked:
                raise Invalid(f"messages.{i}: unexpected `tool_use_id` found in `tool_result` "
                              f"blocks: {b.get('tool_use_id')}. Each `tool_result` block must "
                              "have a corresponding `tool_use` block in the previous message.")


def _blocks(body: dict[str, Any]) -> list[tuple[Any, bool]]:
    """Every cacheable unit in prompt order (tools, system, messages), with its breakpoint."""
    out: list[tuple[Any, bool]] = []
    for tool in body.get("tools") or []:
        out.append((tool, "cache_control" in tool))
    system = body.get("system")
    if isinstance(system, str):
        out.append((system, False))
    elif isinstance(system, list):
        out.extend((b, isinstance(b, dict) and "cache_control" in b) for b in system)
    for msg in body["messages"]:
        content = msg["content"]
        if isinstance(content, str):
            out.append(({"role": msg["role"], "text": content}, False))
        else:
            out.extend(({"role": msg["role"], **b}, "cache_control" in b) for b in content)
    if "cache_control" in body and out:
        # Automatic caching: the breakpoint moves to the last block.
        out[-1] = (out[-1][0], True)
    return out


def usage_for(body: dict[str, Any], cache: dict[str, int], output_tokens: int) -> dict[str, Any]:
    digest = hashlib.sha256()
    total = 0
    breakpoints: list[tuple[str, int]] = []
    for block, is_breakpoint in _blocks(body):
        plain = {k: v for k, v in block.items() if k != "cache_control"} if isinstance(
            block, dict) else block
        text = _SORTED.encode(plain)
        digest.update(text.encode())
        # estimate_tokens(plain), without serializing again: sorting keys keeps the length.
        total += max(1, len(plain if isinstance(plain, str) else text) // 4)
        if is_breakpoint:
            breakpoints.append((digest.hexdigest(), total))
    read = max((tokens for h, tokens in breakpoints if h in cache), default=0)
    cached_upto = breakpoints[-1][1] if breakpoints else 0
    for h, tokens in breakpoints:
        cache[h] = tokens
    return {
        "input_tokens": max(total - cached_upto, 1),
        "cache_creation_input_tokens": max(cached_upto - read, 0),
        "cache_read_input_tokens": read,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def last_user_text(body: dict[str, Any]) -> str:
    for msg in reversed(body["messages"]):
        if msg["role"] != "user":
            continue
        content = msg["content"]
        if isinstance(content, str):
            return content
        texts = [b.get("text", "") for b in content if b.get("type") == "text"]
        if texts:
            return "\n".join(texts)
    return ""


def friendly_reply(body: dict[str, Any]) -> str:
    quoted = " ".join(last_user_text(body).split())
    if len(quoted) > QUOTE_MAX:
        quoted = quoted[: QUOTE_MAX - 1] + "…"
    seen = attachments_seen(body)
    looked = ("Ya vi la foto que nos enviaste. " if "image" in seen else "") + (
        "Ya revisé el documento PDF que nos enviaste. " if "document" in seen else "")
    if not quoted:
        return f"¡Hola! {looked}Gracias por tu mensaje. ¿En qué te puedo ayudar?"
    return f"¡Hola! {looked}Gracias por tu mensaje: «{quoted}». ¿En qué te puedo ayudar?"


def _pick_tool(body: dict[str, Any], name: str | None) -> dict[str, Any] | None:
    tools = [t for t in body.get("tools") or [] if isinstance(t.get("input_schema"), dict)]
    choice = body.get("tool_choice") or {}
    if name is None and choice.get("type") == "none":
        return None
    wanted = name or (choice.get("name") if choice.get("type") == "tool" else None)
    for tool in tools:
        if wanted is None or tool["name"] == wanted:
            return tool
    return {"name": wanted, "input_schema": {}} if wanted else None


def build_message(body: dict[str, Any], step: Step | None, cache: dict[str, int],
                  demo: bool = False) -> dict:
    scripted_text = step.text if step is not None else None
    scripted_input = step.tool_input if step is not None else None
    scripted_name = step.tool_name if step is not None else None
    calls = step.tool_calls if step is not None else None
    if step is None and demo and demo_brain.offers_assistant_tools(body):
        calls = [{"name": n, "input": i} for n, i in demo_brain.decide(body)]
    content: list[dict[str, Any]]
    stop_reason = "end_turn"
    tool = None if scripted_text is not None or calls else _pick_tool(body, scripted_name)
    if tool is None and scripted_input is not None:
        tool = {"name": scripted_name or "tool", "input_schema": {}}
    if calls:
        content = [{"type": "tool_use", "id": _id("toolu_"), "name": c["name"],
                    "input": c.get("input") or {}} for c in calls]
        stop_reason = "tool_use"
    elif scripted_text is not None:
        content = [{"type": "text", "text": scripted_text}]
    elif tool is not None:
        tool_input = (scripted_input if scripted_input is not None
                      else sample_from_schema(tool["input_schema"], friendly_reply(body)))
        content = [{"type": "tool_use", "id": _id("toolu_"), "name": tool["name"],
                    "input": tool_input}]
        stop_reason = "tool_use"
    else:
        text = friendly_reply(body)
        limit = body["max_tokens"] * 4
        if len(text) > limit:
            text, stop_reason = text[:limit], "max_tokens"
        content = [{"type": "text", "text": text}]
    output_tokens = sum(estimate_tokens(b.get("text") or b.get("input") or "") for b in content)
    return {
        "id": _id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage_for(body, cache, output_tokens),
    }


def _answer(recorder: Recorder, step: Step | None, call: Call, body: Any) -> Answer:
    if step is not None and step.is_error:
        status = step.status or 500
        return error(status, step.message, error_type=step.error_type, headers=step.headers)
    key = call.headers.get("x-api-key") or call.headers.get("authorization")
    if not key:
        return error(401, "x-api-key header is required")
    if key.startswith("invalid"):
        return error(401, "invalid x-api-key")
    if not call.headers.get("anthropic-version"):
        return error(400, "anthropic-version: header is required")
    try:
        validate(body)
    except (Invalid, AttributeError, TypeError, KeyError, ValueError) as exc:
        return error(400, str(exc))
    message = build_message(body, step, recorder.prompt_cache, recorder.demo_brain)
    return Answer(200, message, {"request-id": _id("req_")})


async def handle(recorder: Recorder, call: Call) -> Answer:
    entry = recorder.record("anthropic", call)
    step = recorder.next_step("anthropic")
    await apply_delay(step)
    answer = _answer(recorder, step, call, call.body)
    entry.status = answer.status
    if answer.status == 200:
        entry.answered_id = answer.body["id"]
        first = answer.body["content"][0]
        entry.text = first.get("text") or _PLAIN.encode(first.get("input"))
    else:
        entry.error_code = answer.body["error"]["type"]
    return answer


def count_tokens(body: Any) -> Answer:
    """`POST /v1/messages/count_tokens`: the same estimate the fake bills in `usage`."""
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        return error(400, "messages: Field required")
    try:
        validate({**body, "max_tokens": 1})
    except Invalid as exc:
        return error(400, str(exc))
    total = sum(estimate_tokens(b) for b, _ in _blocks(body))
    return Answer(200, {"input_tokens": total})
