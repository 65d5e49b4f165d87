"""The tiny models' chat template (Qwen2.5-style, with tools) and rendering it as transformers does.

mlx_lm.server parses the `<tool_call>` output this template asks for into OpenAI `tool_calls`.
SAMPLE_TOOLS are tools of the kind the suites offer, for corpora that show a tools header.
jinja2 is imported only when a chat is rendered.
"""

import functools
import json

DEFAULT_SYSTEM = "You are a helpful coding assistant."

# Qwen2.5's template with a shorter tools instruction (every header token costs training
# time). mlx_lm picks the json_tools parser because it holds "<tool_call>" and
# "tool_call.name". Tool-call arguments may be a dict (rendered with tojson) or a JSON string.
CHAT_TEMPLATE = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0].role == 'system' %}
        {{- messages[0].content }}
    {%- else %}
        {{- 'DEFAULT_SYSTEM' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions."
        + " Their signatures are within <tools></tools>:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each call, return a json object within <tool_call></tool_call> tags:"
        + "\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}"
        + "\n</tool_call><|im_end|>\n" }}
{%- elif messages[0].role == 'system' %}
    {{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
{%- else %}
    {{- '<|im_start|>system\nDEFAULT_SYSTEM<|im_end|>\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if message.role == 'user' or (message.role == 'system' and not loop.first)
        or (message.role == 'assistant' and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + (message.content or '') + '<|im_end|>\n' }}
    {%- elif message.role == 'assistant' %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {%- if tool_call.arguments is string %}
                {{- tool_call.arguments }}
            {%- else %}
                {{- tool_call.arguments | tojson }}
            {%- endif %}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == 'tool' %}
        {%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' + (message.content or '') + '\n</tool_response>' }}
        {%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
""".replace("DEFAULT_SYSTEM", DEFAULT_SYSTEM)


def _tool(name: str, description: str, **params: str) -> dict:
    """An OpenAI-style function tool whose parameters are all required strings."""
    properties = {key: {"type": "string", "description": text} for key, text in params.items()}
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": list(params)},
        },
    }


# Tools of the kind the suites offer; the corpus renders them so their JSON becomes cheap.
SAMPLE_TOOLS = [
    _tool("read_file", "Read a text file.", path="Path of the file."),
    _tool(
        "write_file",
        "Write text to a file.",
        path="Path of the file.",
        content="The text to write.",
    ),
    _tool("run_command", "Run a shell command.", command="The command line."),
    _tool("list_files", "List the files in a directory.", path="Path of the directory."),
]


def render_chat(messages: list[dict], tools: list[dict] | None = None, **kwargs) -> str:
    """Render CHAT_TEMPLATE the way transformers does (tojson without escaping or sorting)."""
    return _compiled_template().render(messages=messages, tools=tools, **kwargs)


@functools.cache
def _compiled_template():
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = lambda value: json.dumps(value, ensure_ascii=False)
    return env.from_string(CHAT_TEMPLATE)
