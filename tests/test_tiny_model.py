"""The tiny model: deterministic offline build, chat template with tools, mlx-lm can use it."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import communicate

from labbench import PROJECT_ROOT
from labbench.core.errors import UserError
from labbench.tiny.chattemplate import CHAT_TEMPLATE, SAMPLE_TOOLS, render_chat
from labbench.tiny.tinymodel import (
    MODEL_FILES,
    build_tiny_model,
    ensure_tiny_model,
    is_tiny_model_ready,
)

READ_FILE = SAMPLE_TOOLS[0]
TOOL_CHAT = [
    {"role": "user", "content": "Read a.py"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"type": "function", "function": {"name": "read_file", "arguments": {"path": "a.py"}}}
        ],
    },
    {"role": "tool", "content": "print('hi')"},
    {"role": "assistant", "content": "It prints hi."},
]
EXPECTED_TOOL_CHAT = """\
<|im_start|>system
You are a helpful coding assistant.

# Tools

You may call one or more functions. Their signatures are within <tools></tools>:
<tools>
{"type": "function", "function": {"name": "read_file", "description": "Read a text file.", \
"parameters": {"type": "object", "properties": {"path": {"type": "string", \
"description": "Path of the file."}}, "required": ["path"]}}}
</tools>

For each call, return a json object within <tool_call></tool_call> tags:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call><|im_end|>
<|im_start|>user
Read a.py<|im_end|>
<|im_start|>assistant
<tool_call>
{"name": "read_file", "arguments": {"path": "a.py"}}
</tool_call><|im_end|>
<|im_start|>user
<tool_response>
print('hi')
</tool_response><|im_end|>
<|im_start|>assistant
It prints hi.<|im_end|>
"""
ROUND_TRIP_TEXTS = [
    "Read src/app.py, then run `pytest -q tests/test_app.py::test_add`.",
    'def add(a, b):\n    """Add two numbers."""\n    return a + b  # 12 + 30 = 42\n',
    "cd ~/work && ls -la | grep '.py' > files.txt\n\tgit diff HEAD~1 -- src/",
    'Unicode too: café, naïve, 数据, emoji 🙂, and {"path": "a b/c.json"}',
]


def sha256_files(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.iterdir()}


@pytest.fixture(scope="session")
def tiny_builds(tmp_path_factory) -> tuple[Path, Path]:
    """Two builds with the same seed into different directories."""
    root = tmp_path_factory.mktemp("tiny")
    return build_tiny_model(root / "a", seed=0), build_tiny_model(root / "b", seed=0)


@pytest.fixture(scope="session")
def tiny_model(tiny_builds) -> Path:
    return tiny_builds[0]


@pytest.fixture(scope="session")
def loaded(tiny_model):
    from mlx_lm import load

    return load(str(tiny_model))


def test_importing_the_module_stays_light():
    code = "import sys, labbench.tiny.tinymodel; print(sorted({'mlx', 'mlx_lm', 'tokenizers', "
    code += "'transformers', 'jinja2'} & set(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_template_renders_tools_and_a_tool_call_as_qwen_json():
    assert render_chat(TOOL_CHAT, tools=[READ_FILE]) == EXPECTED_TOOL_CHAT


def test_template_renders_string_arguments_like_a_dict():
    as_string = json.loads(json.dumps(TOOL_CHAT))
    as_string[1]["tool_calls"][0]["function"]["arguments"] = '{"path": "a.py"}'
    assert render_chat(as_string, tools=[READ_FILE]) == EXPECTED_TOOL_CHAT


def test_template_without_tools_has_default_system_and_generation_prompt():
    text = render_chat([{"role": "user", "content": "hi"}], add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nYou are a helpful coding assistant.<|im_end|>\n"
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    )
    system = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    assert render_chat(system).startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>")
    assert render_chat(system, tools=[READ_FILE]).startswith("<|im_start|>system\nBe brief.\n\n")


def test_consecutive_tool_results_share_one_user_turn():
    messages = [{"role": "tool", "content": "one"}, {"role": "tool", "content": "two"}]
    assert render_chat(messages).endswith(
        "<|im_start|>user\n<tool_response>\none\n</tool_response>"
        "\n<tool_response>\ntwo\n</tool_response><|im_end|>\n"
    )


def test_mlx_lm_infers_the_json_tools_parser_from_the_template():
    from types import SimpleNamespace

    from mlx_lm.tokenizer_utils import _infer_tool_parser

    assert _infer_tool_parser(SimpleNamespace(chat_template=CHAT_TEMPLATE)) == "json_tools"


def test_build_refuses_to_replace_a_directory_that_is_not_a_model(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not a model directory"):
        build_tiny_model(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.slow("two tiny-model builds")
@pytest.mark.timeout(120)
def test_same_seed_builds_byte_identical_files(tiny_builds):
    a, b = tiny_builds
    assert sorted(p.name for p in a.iterdir()) == sorted(MODEL_FILES)
    assert sha256_files(a) == sha256_files(b)
    assert sorted(p.name for p in a.parent.iterdir() if p.is_dir()) == ["a", "b"]  # no temp dirs


@pytest.mark.slow("the tiny model's first build (models/tiny)")
@pytest.mark.timeout(120)
def test_model_config_and_tokenizer_files(tiny_model):
    config = json.loads((tiny_model / "config.json").read_text())
    tokenizer = json.loads((tiny_model / "tokenizer.json").read_text())
    ids = {t["content"]: t["id"] for t in tokenizer["added_tokens"]}
    assert config["model_type"] == "qwen2"
    assert config["eos_token_id"] == [ids["<|im_end|>"], ids["<|endoftext|>"]]
    assert max(ids.values()) < config["vocab_size"] == 1536
    specials = {t["content"] for t in tokenizer["added_tokens"] if t["special"]}
    assert specials == {"<|endoftext|>", "<|im_start|>", "<|im_end|>"}
    tokenizer_config = json.loads((tiny_model / "tokenizer_config.json").read_text())
    assert tokenizer_config["tool_parser_type"] == "json_tools"
    assert tokenizer_config["eos_token"] == "<|im_end|>"
    assert (tiny_model / "chat_template.jinja").read_text() == CHAT_TEMPLATE


@pytest.mark.slow("the tiny model's first build (models/tiny)")
@pytest.mark.timeout(120)
def test_tokenizer_round_trips_paths_and_code(tiny_model):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    raw = Tokenizer.from_file(str(tiny_model / "tokenizer.json"))
    # transformers 5 rebuilds Qwen2's pre-tokenizer from its own class: it must agree with ours.
    hf = AutoTokenizer.from_pretrained(str(tiny_model))
    assert hf is not None
    for text in ROUND_TRIP_TEXTS:
        ids = raw.encode(text).ids
        assert raw.decode(ids) == text
        assert hf.encode(text, add_special_tokens=False) == ids
    for token in ["<|im_start|>", "<tool_call>", "</tool_response>", "</tools>"]:
        assert len(raw.encode(token).ids) == 1
    # Trained on the template text, the tools header takes whole words, not bytes.
    header = render_chat([{"role": "user", "content": "hi"}], tools=SAMPLE_TOOLS[:3])
    header = header.split("<|im_start|>user")[0]
    assert len(raw.encode(header).ids) < len(header) / 3.5


@pytest.mark.slow("mlx_lm loading the tiny model")
@pytest.mark.timeout(120)
def test_mlx_lm_loads_renders_parses_and_generates(loaded):
    from mlx_lm import stream_generate

    model, tokenizer = loaded
    assert tokenizer.has_tool_calling
    text = tokenizer.apply_chat_template(TOOL_CHAT, tools=[READ_FILE], tokenize=False)
    assert text == EXPECTED_TOOL_CHAT
    call = text.split("<tool_call>\n")[-1].split("\n</tool_call>")[0]
    assert tokenizer.tool_parser(call, [READ_FILE]) == {
        "name": "read_file",
        "arguments": {"path": "a.py"},
    }
    prompt = tokenizer.apply_chat_template(
        TOOL_CHAT[:1], tools=SAMPLE_TOOLS, add_generation_prompt=True
    )
    # Training with mask_prompt relies on the prompt being a token prefix of the full turn.
    full = tokenizer.apply_chat_template(TOOL_CHAT[:2], tools=SAMPLE_TOOLS)
    assert full[: len(prompt)] == prompt
    assert tokenizer.decode(full[len(prompt) : len(prompt) + 1]) == "<tool_call>"
    responses = list(stream_generate(model, tokenizer, prompt, max_tokens=5))
    assert responses[-1].prompt_tokens == len(prompt)
    assert len(responses) == 5 or responses[-1].finish_reason == "stop"


@pytest.mark.slow("two processes building a tiny model at once")
@pytest.mark.timeout(120)
def test_ensure_builds_once_when_two_processes_race(tmp_path):
    out = tmp_path / "models" / "tiny"
    code = f"from labbench.tiny.tinymodel import ensure_tiny_model; ensure_tiny_model({str(out)!r})"
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", code], cwd=PROJECT_ROOT, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    try:
        errors = [communicate(racer)[1] for racer in racers]
    finally:
        for racer in racers:
            racer.kill()
            racer.wait()
    assert [racer.returncode for racer in racers] == [0, 0]
    assert is_tiny_model_ready(out)
    assert sum("building the tiny model in" in err for err in errors) == 1
    assert ensure_tiny_model(out) == out  # ready: returns without building


def test_script_leaves_a_built_model_alone(tmp_path):
    for name in MODEL_FILES:
        (tmp_path / name).write_text("{}")
    script = PROJECT_ROOT / "scripts" / "tiny_model.py"
    out = subprocess.run(
        [sys.executable, str(script), f"out={tmp_path}"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "already built" in out.stdout


# --- the pre-trained chat model (models/tiny-chat, shipped) -------------------------------------


@pytest.mark.timeout(120)
def test_the_shipped_chat_model_was_built_by_the_current_recipe(tiny_model):
    """Changing the recipe or the tokenizer without rebuilding (`just tiny-model --chat --force`)
    fails here."""
    from labbench.tiny import pretrain

    recipe = json.loads((pretrain.CHAT_MODEL_DIR / pretrain.RECIPE_FILE).read_text())
    assert (recipe["seed"], recipe["steps"], recipe["learning_rate"]) == (
        0,
        pretrain.STEPS,
        pretrain.LEARNING_RATE,
    )
    assert recipe["corpus_chats"] == pretrain.CORPUS_CHATS
    assert recipe["tools_header_share"] == pretrain.TOOLS_HEADER_SHARE
    for name in ["chat_template.jinja", "tokenizer.json", "tokenizer_config.json", "config.json"]:
        assert (pretrain.CHAT_MODEL_DIR / name).read_bytes() == (tiny_model / name).read_bytes()
    assert recipe["loss_every_10pct"][-1] < recipe["loss_every_10pct"][0] / 4


@pytest.mark.timeout(120)
def test_the_chat_model_answers_requests_in_prose_and_never_calls_a_tool():
    """The base of the learning demo: it names the kind of request but has never seen a call."""
    from mlx_lm import batch_generate, load

    from labbench.eval.suite import load_suite
    from labbench.tiny.pretrain import CHAT_MODEL_DIR

    suite = load_suite("baseline")
    prompts = [p for p in suite.prompts if p.category == "tool_calling" and p.expect_tools]
    model, tokenizer = load(str(CHAT_MODEL_DIR))[:2]
    texts = [
        tokenizer.apply_chat_template(
            [{"role": "system", "content": p.system}, {"role": "user", "content": p.prompt}],
            tools=suite.request_tools(p),
            add_generation_prompt=True,
        )
        for p in prompts
    ]
    answers = batch_generate(model, tokenizer, texts, max_tokens=40, verbose=False).texts
    assert not [a for a in answers if "<tool_call>" in a]
    kinds = [a for a in answers if a.startswith(("Reading", "Running", "Writing"))]
    assert len(kinds) >= len(prompts) // 2, answers
