"""Tool calls from a chat completion: the API's `tool_calls` list and every text format seen.

Text formats, tried in this order (a region claimed by one is not read again by the next):
- `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` (Qwen2.5, Hermes; "parameters" works
  too), or Qwen3's `<tool_call><function=NAME><parameter=K>V</parameter></function></tool_call>`;
- Qwen3's `<function=NAME>...</function>` with the opening `<tool_call>` missing;
- Mistral's `[TOOL_CALLS] [{...}, ...]` and `[TOOL_CALLS]NAME[ARGS]{...}`;
- a ``` fence holding a call object or a list of them;
- a bare call object in the text.
Inside tool-call markup any object with a name is a call. Outside it (fences, bare JSON) the
object must also have "arguments" or "parameters", so `{"name": "Alice", "age": 3}` in an answer
is not taken for a call. Nothing here raises: garbage gives no calls.
"""

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

_TOOL_CALL_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|(?=<tool_call>)|\Z)", re.DOTALL)
_FUNCTION_BLOCK = re.compile(
    r"<function=([^>\n]*)>(.*?)(?:</function>|(?=<function=)|(?=</tool_call>)|\Z)", re.DOTALL
)
_PARAMETER = re.compile(r"<parameter=([^>\n]*)>(.*?)(?:</parameter>|(?=<parameter=)|\Z)", re.DOTALL)
_MISTRAL_MARKER = "[TOOL_CALLS]"
_MISTRAL_NAMED_CALL = re.compile(r"\s*([A-Za-z_][\w.-]*)(?:\[CALL_ID\][^\[]*)?\[ARGS\]\s*")
_FENCE = re.compile(r"```[^\n`]*\n(.*?)```", re.DOTALL)
_JSON_START = re.compile(r"[\[{]")
_STRAY_TAG = re.compile(r"</?tool_call>")
_DECODER = json.JSONDecoder()


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict  # always a dict; JSON-string arguments are parsed; unparseable -> {}


@dataclass
class _Span:
    """A region of the text that is tool-call markup, and the calls read from it."""

    start: int
    end: int
    calls: list[ToolCall] = field(default_factory=list)
    unclosed: bool = False  # markup that runs to the end of the text without its closing tag


def extract_tool_calls(content: str | None, api_tool_calls: list | None = None) -> list[ToolCall]:
    """Calls from the API list, then from the text in text order, without exact duplicates."""
    calls: list[ToolCall] = []
    found = _api_calls(api_tool_calls) + [
        call for span in _scan(_as_text(content)) for call in span.calls
    ]
    for call in found:
        if call not in calls:
            calls.append(call)
    return calls


def visible_text(content: str | None) -> str:
    """The content with tool-call markup removed, stripped."""
    text = _as_text(content)
    pieces, position = [], 0
    for span in _scan(text):
        pieces.append(text[position : span.start])
        position = span.end
    pieces.append(text[position:])
    # A newline, not "", so the words either side of a removed call do not run together.
    return _STRAY_TAG.sub("", "\n".join(pieces)).strip()


def has_unclosed_tool_call(content: str | None) -> bool:
    """True when tool-call markup starts but the text ends before it closes (cut off)."""
    return any(span.unclosed for span in _scan(_as_text(content)))


def _as_text(content: object) -> str:
    return content if isinstance(content, str) else ""


def _scan(text: str) -> list[_Span]:
    spans: list[_Span] = []

    def claim(candidates):
        for span in candidates:
            if all(span.end <= other.start or span.start >= other.end for other in spans):
                spans.append(span)

    claim(_tool_call_blocks(text))
    claim(_function_blocks(text))
    claim(_mistral_calls(text))
    claim(_fenced_calls(text))
    claim(_bare_calls(text, list(spans)))
    return sorted(spans, key=lambda span: span.start)


def _tool_call_blocks(text: str):
    for match in _TOOL_CALL_BLOCK.finditer(text):
        body = match.group(1)
        if "<function=" in body:
            calls = [call for _, call in _xml_calls(body) if call]
        else:
            calls = [call for _, _, value in _json_values(body) for call in _calls_in(value, False)]
        yield _Span(match.start(), match.end(), calls, _runs_off(match, text, "</tool_call>"))


def _function_blocks(text: str):
    for match, call in _xml_calls(text):
        calls = [call] if call else []
        yield _Span(match.start(), match.end(), calls, _runs_off(match, text, "</function>"))


def _xml_calls(text: str):
    """(match, call or None) for each Qwen3 `<function=NAME>` block."""
    for match in _FUNCTION_BLOCK.finditer(text):
        name = match.group(1).strip()
        arguments = {}
        for parameter in _PARAMETER.finditer(match.group(2)):
            key = parameter.group(1).strip()
            if key:
                arguments[key] = _parameter_value(parameter.group(2).strip())
        yield match, ToolCall(name, arguments) if name else None


def _parameter_value(value: str) -> object:
    """A JSON value (number, object, ...) when the text is one, else the trimmed string."""
    parsed = _loads(value)
    return value if parsed is None and value != "null" else parsed


def _runs_off(match: re.Match, text: str, closing_tag: str) -> bool:
    return match.end() == len(text) and not match.group(0).endswith(closing_tag)


def _mistral_calls(text: str):
    start = text.find(_MISTRAL_MARKER)
    while start != -1:
        position = start + len(_MISTRAL_MARKER)
        named = _MISTRAL_NAMED_CALL.match(text, position)
        decoded = _decode_at(text, named.end() if named else _skip_space(text, position))
        if decoded is None:  # cut off, or garbled: the rest of the text is markup
            yield _Span(start, len(text), unclosed=True)
            return
        value, position = decoded
        if named:
            calls = [ToolCall(named.group(1), _arguments(value))]
        else:
            calls = _calls_in(value, False)
        yield _Span(start, position, calls)
        start = text.find(_MISTRAL_MARKER, position)


def _fenced_calls(text: str):
    for match in _FENCE.finditer(text):
        calls = [
            call for _, _, value in _json_values(match.group(1)) for call in _calls_in(value, True)
        ]
        if calls:
            yield _Span(match.start(), match.end(), calls)


def _bare_calls(text: str, claimed: list[_Span]):
    for start, end, value in _json_values(text, claimed):
        calls = _calls_in(value, True)
        if calls:
            yield _Span(start, end, calls)


def _json_values(text: str, claimed: Sequence[_Span] = ()):
    """(start, end, value) for each JSON object or array in the text, outside claimed spans."""
    position = 0
    while match := _JSON_START.search(text, position):
        start = match.start()
        inside = next((span for span in claimed if span.start <= start < span.end), None)
        if inside:
            position = inside.end
            continue
        try:
            value, position = _DECODER.raw_decode(text, start)
        except RecursionError:
            # Thousands of "[" (a degenerate model loop) would fail again at every one of them.
            position = start + 1
            while position < len(text) and (text[position] == "[" or text[position].isspace()):
                position += 1
            continue
        except ValueError:
            position = start + 1
            continue
        yield start, position, value


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position].isspace():
        position += 1
    return position


def _decode_at(text: str, position: int) -> tuple[object, int] | None:
    try:
        return _DECODER.raw_decode(text, position)
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        return None


def _loads(text: str) -> object:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _calls_in(value: object, strict: bool) -> list[ToolCall]:
    """Calls in a decoded JSON value: one call object, or a list of them."""
    items = value if isinstance(value, list) else [value]
    calls = [_call_from_object(item, strict) for item in items if isinstance(item, dict)]
    return [call for call in calls if call is not None]


def _call_from_object(obj: dict, strict: bool) -> ToolCall | None:
    function = obj.get("function")
    if isinstance(function, dict):  # OpenAI shape: {"type": "function", "function": {...}}
        obj = function
    name = obj.get("name")
    if not isinstance(name, str) or not name.strip():
        return None
    if "arguments" in obj:
        raw_arguments = obj["arguments"]
    elif "parameters" in obj:
        raw_arguments = obj["parameters"]
    elif strict:
        return None
    else:
        raw_arguments = {}
    return ToolCall(name.strip(), _arguments(raw_arguments))


def _arguments(raw: object) -> dict:
    if isinstance(raw, str):
        raw = _loads(raw)
    if isinstance(raw, dict):
        return {str(key): value for key, value in raw.items()}
    return {}


def _api_calls(api_tool_calls: object) -> list[ToolCall]:
    if not isinstance(api_tool_calls, (list, tuple)):
        return []
    calls = [_call_from_object(item, False) for item in api_tool_calls if isinstance(item, dict)]
    return [call for call in calls if call is not None]
