"""Tool calls from a chat completion: the API's `tool_calls` list and every text format seen.

Text formats, tried in this order (a region claimed by one is not read again by the next):
- `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` (Qwen2.5, Hermes; "parameters" works
  too), or Qwen3's `<tool_call><function=NAME><parameter=K>V</parameter></function></tool_call>`;
- Qwen3's `<function=NAME>...</function>` with the opening `<tool_call>` missing;
- Mistral's `[TOOL_CALLS] [{...}, ...]` and `[TOOL_CALLS]NAME[ARGS]{...}`;
- Llama's `<|python_tag|>{"name": ..., "parameters": {...}}` (several joined by ";");
- a ``` fence holding a call object or a list of them;
- pythonic calls, a Python list of calls with literal keyword arguments: `[f(a=1), g(b="x")]`
  (Llama 3.2, BFCL's prompting format); read with `ast`, never run;
- a bare call object in the text.
`decode_tool_calls` also says which of these ways the calls came (DECODED_* and the format
names). Inside tool-call markup any object with a name is a call. Outside it (fences, bare JSON)
the object must also have "arguments" or "parameters", so `{"name": "Alice", "age": 3}` in an
answer is not taken for a call. Nothing here raises: garbage gives no calls.
"""

import ast
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
_PYTHON_TAG = "<|python_tag|>"
_PYTHONIC_START = re.compile(r"\[\s*[A-Za-z_][\w.]*\s*\(")
_PYTHONIC_TRIES = 64  # closing brackets tried per candidate: garbage stays linear
_MISTRAL_NAMED_CALL = re.compile(r"\s*([A-Za-z_][\w.-]*)(?:\[CALL_ID\][^\[]*)?\[ARGS\]\s*")
_FENCE = re.compile(r"```[^\n`]*\n(.*?)```", re.DOTALL)
_JSON_START = re.compile(r"[\[{]")
_STRAY_TAG = re.compile(r"</?tool_call>")
_DECODER = json.JSONDecoder()

DECODED_API = "tool_calls"  # the answer's `tool_calls` list
DECODED_NONE = "none"  # no call anywhere


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
    format: str = ""  # which text format: hermes, qwen3-xml, mistral, llama, json, pythonic


def extract_tool_calls(content: str | None, api_tool_calls: list | None = None) -> list[ToolCall]:
    """Calls from the API list, then from the text in text order, without exact duplicates."""
    return decode_tool_calls(content, api_tool_calls)[0]


def decode_tool_calls(
    content: str | None, api_tool_calls: list | None = None, keep_repeats: bool = False
) -> tuple[list[ToolCall], str]:
    """extract_tool_calls, and how they were decoded: DECODED_API, "text:FORMAT" (formats in
    text order, joined by "+"), both joined by "+", or DECODED_NONE. `keep_repeats` keeps a
    call made twice in the text (BFCL's parallel questions may want the same call twice)."""
    api = _api_calls(api_tool_calls)
    spans = [span for span in _scan(_as_text(content)) if span.calls]
    calls: list[ToolCall] = list(api)
    for call in [call for span in spans for call in span.calls]:
        if call not in (api if keep_repeats else calls):
            calls.append(call)
    ways = [DECODED_API] if api else []
    ways += ["text:" + f for f in dict.fromkeys(span.format for span in spans)]
    return calls, "+".join(ways) or DECODED_NONE


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
    claim(_python_tag_calls(text))
    claim(_fenced_calls(text))
    claim(_pythonic_calls(text))
    claim(_bare_calls(text, list(spans)))
    return sorted(spans, key=lambda span: span.start)


def _tool_call_blocks(text: str):
    for match in _TOOL_CALL_BLOCK.finditer(text):
        body = match.group(1)
        if "<function=" in body:
            calls = [call for _, call in _xml_calls(body) if call]
        else:
            calls = [call for _, _, value in _json_values(body) for call in _calls_in(value, False)]
        unclosed = _runs_off(match, text, "</tool_call>")
        form = "qwen3-xml" if "<function=" in body else "hermes"
        yield _Span(match.start(), match.end(), calls, unclosed, form)


def _function_blocks(text: str):
    for match, call in _xml_calls(text):
        calls = [call] if call else []
        unclosed = _runs_off(match, text, "</function>")
        yield _Span(match.start(), match.end(), calls, unclosed, "qwen3-xml")


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
            yield _Span(start, len(text), unclosed=True, format="mistral")
            return
        value, position = decoded
        if named:
            calls = [ToolCall(named.group(1), _arguments(value))]
        else:
            calls = _calls_in(value, False)
        yield _Span(start, position, calls, format="mistral")
        start = text.find(_MISTRAL_MARKER, position)


def _python_tag_calls(text: str):
    start = text.find(_PYTHON_TAG)
    while start != -1:
        position, calls = start + len(_PYTHON_TAG), []
        while (decoded := _decode_at(text, _skip_space(text, position))) is not None:
            value, position = decoded
            calls += _calls_in(value, False)
            after = _skip_space(text, position)
            if not text.startswith(";", after):
                break
            position = after + 1
        if not calls:  # cut off or garbled: the rest of the text is markup
            yield _Span(start, len(text), unclosed=True, format="llama")
            return
        yield _Span(start, position, calls, format="llama")
        start = text.find(_PYTHON_TAG, position)


def _fenced_calls(text: str):
    for match in _FENCE.finditer(text):
        calls = [
            call for _, _, value in _json_values(match.group(1)) for call in _calls_in(value, True)
        ]
        if calls:
            yield _Span(match.start(), match.end(), calls, format="json")


def _pythonic_calls(text: str):
    """`[f(a=1), g(b="x")]`: the shortest bracketed text from each candidate "[" that parses
    as a list of calls with literal keyword arguments."""
    position = 0
    while match := _PYTHONIC_START.search(text, position):
        start, end = match.start(), text.find("]", match.end())
        calls, tries = None, 0
        while end != -1 and calls is None and tries < _PYTHONIC_TRIES:
            calls, tries = _pythonic_list(text[start : end + 1]), tries + 1
            end = text.find("]", end + 1) if calls is None else end
        if calls is None:
            position = match.end()
            continue
        yield _Span(start, end + 1, calls, format="pythonic")
        position = end + 1


def _pythonic_list(source: str) -> list[ToolCall] | None:
    try:
        tree = ast.parse(source, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    if not isinstance(tree, ast.List) or not tree.elts:
        return None
    calls = []
    for node in tree.elts:
        if not isinstance(node, ast.Call):
            return None
        name = _dotted_name(node.func)
        if name is None or node.args or any(k.arg is None for k in node.keywords):
            return None
        try:
            arguments = {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg}
        except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
            return None
        calls.append(ToolCall(name, arguments))
    return calls


def _dotted_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        owner = _dotted_name(node.value)
        return None if owner is None else f"{owner}.{node.attr}"
    return None


def _bare_calls(text: str, claimed: list[_Span]):
    for start, end, value in _json_values(text, claimed):
        calls = _calls_in(value, True)
        if calls:
            yield _Span(start, end, calls, format="json")


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
