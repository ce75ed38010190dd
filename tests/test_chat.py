"""Chat: the engine's chat templates against transformers, and `bitnet-cli -cnv` as a user drives it.

Templates: the engine renders each family by hand (src/chat/chat.cpp, no Jinja). The reference is
transformers' apply_chat_template running the real Jinja text of each family, copied below from
the models' tokenizer_config.json, on the shipped model's vocabulary (a Llama-3-style byte-level
BPE with <|begin_of_text|>/<|eot_id|>, so BOS/EOS and the special tokens are real tokens). Text
and token ids must be identical, for conversations with and without a system prompt, with
whitespace that Jinja's `trim` strips (Unicode spaces included).

Chat loop: bitnet-cli -cnv on the shipped model, driven through pipes and through a
pseudo-terminal. Its greedy answers are checked against fresh runs of the whole conversation
through the C API (so reusing the KV cache across turns changes nothing), and Ctrl-C, /exit,
end of input and a context that fills up are exercised.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bitnet.common import DEFAULT_MODEL_DIR

ROOT = Path(__file__).resolve().parent.parent
MODEL = Path()  # the shipped model's GGUF, set by _shipped_model before any test runs


@pytest.fixture(scope="module", autouse=True)
def _shipped_model(shipped_gguf):
    global MODEL
    MODEL = shipped_gguf

# microsoft/bitnet-b1.58-2B-4T tokenizer_config.json
BITNET_2B4T = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = message['role'] "
    "| capitalize + ': '+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content "
    "= bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ 'Assistant: ' }}{% endif %}"
)
# meta-llama/Meta-Llama-3-8B-Instruct tokenizer_config.json (the Llama-3 family's template)
LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + "
    "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}"
)
# tiiuae/Falcon3-7B-Instruct tokenizer_config.json (the Falcon3 family's template, tools branch included)
FALCON3 = (
    "{%- if tools %}\n{{- '<|system|>\\n' }}\n{%- if messages[0]['role'] == 'system' %}\n"
    "{{- messages[0]['content'] }}\n{%- set remaining_messages = messages[1:] %}\n{%- else %}\n"
    "{%- set remaining_messages = messages %}\n{%- endif %}\n{{- 'You are a Falcon assistant skilled in "
    "function calling. You are helpful, respectful, and concise.\\n\\n# Tools\\n\\nYou have access to the "
    "following functions. You MUST use them to answer questions when needed. For each function call, you "
    "MUST return a JSON object inside <tool_call></tool_call> tags.\\n\\n<tools>' + tools|tojson(indent=2) "
    "+ '</tools>\\n\\n# Output Format\\n\\nYour response MUST follow this format when making function "
    "calls:\\n<tool_call>\\n[\\n  {\"name\": \"function_name\", \"arguments\": {\"arg1\": \"value1\", "
    "\"arg2\": \"value2\"}},\\n  {\"name\": \"another_function\", \"arguments\": {\"arg\": \"value\"}}\\n]"
    "\\n</tool_call>\\nIf no function calls are needed, respond normally without the tool_call tags.\\n' }}\n"
    "{%- for message in remaining_messages %}\n{%- if message['role'] == 'user' %}\n"
    "{{- '<|user|>\\n' + message['content'] + '\\n' }}\n{%- elif message['role'] == 'assistant' %}\n"
    "{%- if message.content %}\n{{- '<|assistant|>\\n' + message['content'] }}\n{%- endif %}\n"
    "{%- if message.tool_calls %}\n{{- '\\n<tool_call>\\n' }}\n{{- message.tool_calls|tojson(indent=2) }}\n"
    "{{- '\\n</tool_call>' }}\n{%- endif %}\n{{- eos_token + '\\n' }}\n{%- elif message['role'] == 'tool' %}\n"
    "{{- '<|assistant|>\\n<tool_response>\\n' + message['content'] + '\\n</tool_response>\\n' }}\n"
    "{%- endif %}\n{%- endfor %}\n{{- '<|assistant|>\\n' if add_generation_prompt }}\n{%- else %}\n"
    "{%- for message in messages %}\n{%- if message['role'] == 'system' %}\n"
    "{{- '<|system|>\\n' + message['content'] + '\\n' }}\n{%- elif message['role'] == 'user' %}\n"
    "{{- '<|user|>\\n' + message['content'] + '\\n' }}\n{%- elif message['role'] == 'assistant' %}\n"
    "{%- if not loop.last %}\n{{- '<|assistant|>\\n' + message['content'] + eos_token + '\\n' }}\n"
    "{%- else %}\n{{- '<|assistant|>\\n' + message['content'] + eos_token }}\n{%- endif %}\n{%- endif %}\n"
    "{%- if loop.last and add_generation_prompt %}\n{{- '<|assistant|>\\n' }}\n{%- endif %}\n"
    "{%- endfor %}\n{%- endif %}"
)
# teknium/OpenHermes-2.5-Mistral-7B tokenizer_config.json (ChatML)
CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
TEMPLATES = {"bitnet": BITNET_2B4T, "llama3": LLAMA3, "falcon3": FALCON3, "chatml": CHATML}

SYSTEM = {"role": "system", "content": "You are a helpful assistant. "}
TURNS = [
    {"role": "user", "content": "  What is a list?\n"},
    {"role": "assistant", "content": "A mutable sequence.\u3000"},
    {"role": "user", "content": "\xa0And a tuple, or a dict {}?"},
]
CONVERSATIONS = {"system": [SYSTEM, *TURNS], "no-system": TURNS, "one-turn": [SYSTEM, TURNS[0]],
                 "assistant-last": [SYSTEM, *TURNS[:2]]}


@pytest.fixture(scope="module")
def model(engine_lib):
    from bitnet.bindings import Model

    with Model(MODEL) as m:
        yield m


@pytest.fixture(scope="module")
def hf_tokenizer(model):
    """transformers' tokenizer on the shipped model's vocabulary, with the GGUF's BOS/EOS."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_file=str(DEFAULT_MODEL_DIR / "tokenizer.json"),
                                   bos_token=model.token_to_piece(model.bos).decode(),
                                   eos_token=model.token_to_piece(model.eos).decode())


# --- templates vs transformers ----------------------------------------------------------------


@pytest.mark.parametrize("conversation", CONVERSATIONS)
@pytest.mark.parametrize("name", TEMPLATES)
def test_rendering_matches_transformers(model, hf_tokenizer, name, conversation):
    msgs = CONVERSATIONS[conversation]
    hf_tokenizer.chat_template = TEMPLATES[name]
    want_text = hf_tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    want_ids = hf_tokenizer.apply_chat_template(msgs, tokenize=True, add_generation_prompt=True)["input_ids"]

    by_name = model.chat_apply(msgs, template=name)
    assert by_name == want_text
    assert model.chat_apply(msgs, template=TEMPLATES[name]) == want_text  # recognized from the Jinja
    assert model.tokenize(by_name, add_bos=False, parse_special=True) == want_ids


def test_model_template_is_recognized(model):
    with open(DEFAULT_MODEL_DIR / "tokenizer_config.json", encoding="utf-8") as f:
        assert json.load(f)["chat_template"] == BITNET_2B4T  # the shipped model carries the 2B4T's
    assert model.chat_template == "bitnet"
    assert model.chat_apply([SYSTEM, TURNS[0]]) == model.chat_apply([SYSTEM, TURNS[0]], template="bitnet")


def test_unknown_template_is_a_clear_error(model):
    from bitnet.bindings import BitnetError, chat_template_names

    assert chat_template_names() == ["bitnet", "llama3", "falcon3", "chatml"]
    mistral = "{{ bos_token }}{% for message in messages %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% endfor %}"
    for tmpl in ("vicuna", mistral):
        with pytest.raises(BitnetError, match="--chat-template.*bitnet, llama3, falcon3, chatml"):
            model.chat_apply(TURNS, template=tmpl)


# --- bitnet-cli -cnv ----------------------------------------------------------------------------


def chat_cmd(engine_bin: Path, *extra: str) -> list[str]:
    return [str(engine_bin / "bitnet-cli"), "-m", str(MODEL), "-cnv", "-t", "1", "--temp", "0", *extra]


def run_chat(engine_bin: Path, stdin: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(chat_cmd(engine_bin, *extra), input=stdin.encode(), capture_output=True, timeout=300,
                          check=False)


def fresh_greedy_answer(model, msgs: list[dict], n_predict: int) -> bytes:
    """The answer bitnet-cli must give: the whole conversation evaluated in a new context, then
    greedy tokens until an end-of-generation token or n_predict tokens."""
    from bitnet.bindings import Context, Sampler

    prompt = model.tokenize(model.chat_apply(msgs), add_bos=False, parse_special=True)
    with Context(model, n_ctx=512, n_threads=1) as ctx, Sampler(temperature=0) as sampler:
        logits = ctx.decode(prompt)[-1]
        out = b""
        for i in range(n_predict):
            t = sampler.sample(logits)
            if model.is_eog(t):
                break
            out += model.token_to_piece(t)
            if i + 1 < n_predict:
                logits = ctx.decode([t])[-1]
    return out


def test_multi_turn_answers_equal_fresh_runs_of_the_whole_conversation(engine_bin, model):
    questions = ["Create a new list", "What does it return?", "And for a dict?"]
    res = run_chat(engine_bin, "".join(q + "\n" for q in questions), "-p", "You document Python.", "-n", "8",
                   "-c", "512")
    assert res.returncode == 0, res.stderr.decode()
    msgs, want = [{"role": "system", "content": "You document Python."}], b""
    for q in questions:
        msgs.append({"role": "user", "content": q})
        answer = fresh_greedy_answer(model, msgs, 8)
        msgs.append({"role": "assistant", "content": answer.decode("utf-8")})
        want += b"> " + answer + b"\n"
    assert res.stdout == want + b"> \n"
    assert b"chat (template bitnet)" in res.stderr


def test_exit_command_and_end_of_input(engine_bin):
    res = run_chat(engine_bin, "Hello\n\n/exit\nnever asked\n", "-n", "4")
    assert res.returncode == 0, res.stderr.decode()
    assert res.stdout.count(b"> ") == 3 and res.stdout.endswith(b"> \n")  # empty line: asked again
    res = run_chat(engine_bin, "", "-n", "4")  # end of input at once
    assert res.returncode == 0 and res.stdout == b"> \n", res.stderr.decode()


def test_full_context_drops_the_oldest_turns(engine_bin, model):
    """-c 48 holds the system prompt and about one exchange: each turn must drop the oldest
    exchanges until the conversation leaves room for -n tokens, and answer as a fresh run of what
    remains would."""
    system = {"role": "system", "content": "You document Python."}
    questions = ["Create a new list of strings from the items", "Return the value of the key",
                 "Raise an error when the file is closed", "Close the socket and return"]
    n_predict, n_ctx = 6, 48
    res = run_chat(engine_bin, "".join(q + "\n" for q in questions), "-p", system["content"],
                   "-n", str(n_predict), "-c", str(n_ctx))
    assert res.returncode == 0, res.stderr.decode()
    assert b"[context full: dropped the" in res.stderr

    kept, want = [], b""  # the exchanges bitnet-cli still holds
    for q in questions:
        kept.append({"role": "user", "content": q})
        while len(kept) > 1 and len(model.tokenize(model.chat_apply([system, *kept]))) + n_predict > n_ctx:
            kept = kept[2:]  # the oldest question and its answer
        answer = fresh_greedy_answer(model, [system, *kept], n_predict)
        kept.append({"role": "assistant", "content": answer.decode("utf-8")})
        want += b"> " + answer + b"\n"
    assert res.stdout == want + b"> \n"


def test_a_message_longer_than_the_context_is_refused_and_the_chat_goes_on(engine_bin):
    res = run_chat(engine_bin, "word " * 80 + "\nHello\n", "-n", "4", "-c", "48")
    assert res.returncode == 0, res.stderr.decode()
    assert b"use a larger -c or a shorter message" in res.stderr
    assert res.stdout.startswith(b"> > ") and res.stdout.count(b"> ") == 3  # no answer to the first


def test_unknown_chat_template_fails_before_the_prompt(engine_bin):
    res = subprocess.run(chat_cmd(engine_bin, "--chat-template", "vicuna"), input=b"hi\n", capture_output=True,
                         timeout=60, check=False)
    assert res.returncode == 1 and b"> " not in res.stdout
    assert b"--chat-template" in res.stderr and b"bitnet, llama3, falcon3, chatml" in res.stderr


# --- through a terminal: Ctrl-C and Ctrl-D ----------------------------------------------------


class Terminal:
    """A program on a pseudo-terminal, as a user at a keyboard sees it."""

    def __init__(self, cmd: list[str], env: dict[str, str]) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: stdin/stdout/stderr are the terminal
            os.execve(cmd[0], cmd, env)
        self.out = b""

    def read_until_quiet(self, quiet: float = 1.0, timeout: float = 120.0) -> bytes:
        """Everything printed until nothing more came for `quiet` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.fd], [], [], quiet)
            if not ready:
                return self.out
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:  # the program exited and closed the terminal
                return self.out
            if not chunk:
                return self.out
            self.out += chunk
        raise AssertionError(f"still printing after {timeout} s: {self.out[-300:]!r}")

    def read_until(self, count: int, timeout: float = 60.0) -> None:
        """Wait until at least `count` bytes have been printed in all."""
        deadline = time.monotonic() + timeout
        while len(self.out) < count:
            assert time.monotonic() < deadline, f"only {self.out!r} after {timeout} s"
            ready, _, _ = select.select([self.fd], [], [], 1.0)
            if ready:
                self.out += os.read(self.fd, 65536)

    def type(self, data: bytes) -> None:
        os.write(self.fd, data)

    def exit_code(self, timeout: float = 60.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
            self.read_until_quiet(0.2, timeout=5)
        os.kill(self.pid, signal.SIGKILL)
        raise AssertionError(f"did not exit: {self.out[-300:]!r}")


def visible(out: bytes) -> bytes:
    """What a terminal shows of out, roughly: without escape sequences, backspaces and CRs."""
    return re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]|[\x08\r]", b"", out)


def at_prompt(term: Terminal) -> bool:
    """bitnet-cli prints "> "; prompt_toolkit draws ">" and moves the cursor past the space."""
    return visible(term.read_until_quiet()).rstrip(b" ").endswith(b">")


def inference_terminal(engine_bin: Path, *args: str) -> Terminal:
    env = {**os.environ, "BITNET_BUILD_DIR": str(engine_bin.parent), "PROMPT_TOOLKIT_NO_CPR": "1"}
    env.pop("BITNET_DEBUG", None)
    return Terminal([sys.executable, str(ROOT / "run_inference.py"), "-m", str(MODEL), "-cnv", "-temp", "0",
                     "-t", "1", *args], env)


def test_ctrl_c_stops_the_answer_not_the_chat(engine_bin):
    """Through run_inference.py, as a user would: Ctrl-C twice during long answers (a full 2048-token
    context takes this model seconds), each time back to the prompt; then /exit, exit code 0."""
    term = inference_terminal(engine_bin, "-n", "-1", "-c", "2048")
    assert at_prompt(term), term.out
    for question in (b"Create a new list\n", b"Tell me more\n"):
        term.type(question)
        term.read_until(len(term.out) + len(question) + 200)  # the echo and the start of the answer
        term.type(b"\x03")
        assert at_prompt(term), term.out[-300:]
    term.type(b"/exit\n")
    assert term.exit_code() == 0, term.out[-500:]
    assert b"Traceback" not in term.out and b"prompt eval:" in term.out


@pytest.mark.parametrize("key", [b"\x03", b"\x04"], ids=["ctrl-c", "ctrl-d"])
def test_ctrl_c_or_ctrl_d_at_the_prompt_quits(engine_bin, key):
    term = Terminal(chat_cmd(engine_bin, "-n", "4"), dict(os.environ))
    assert at_prompt(term), term.out
    term.type(b"Hello\n")
    assert at_prompt(term), term.out
    term.type(key)
    assert term.exit_code() == 0, term.out[-300:]


def test_line_editing_history_and_multi_line_input(engine_bin, model):
    """run_inference.py -cnv on a terminal: arrow keys move in the line (a typo fixed with Left,
    Right and Backspace), Up recalls the previous message, Esc Enter starts a new line in the
    message; the answers are those of bitnet-cli -cnv given the same messages through a pipe."""
    left, right, up, backspace = b"\x1b[D", b"\x1b[C", b"\x1b[A", b"\x7f"
    term = inference_terminal(engine_bin, "-n", "8", "-c", "512", "-p", "You document Python.")
    assert at_prompt(term), term.out
    term.type(b"Create a new lisX" + left + b"t" + right + backspace + b"\r")
    assert at_prompt(term), term.out[-300:]
    term.type(up + b"\r")
    assert at_prompt(term), term.out[-300:]
    term.type(b"Return the\x1b\rvalue\r")
    assert at_prompt(term), term.out[-300:]
    term.type(b"\x04")
    assert term.exit_code() == 0, term.out[-300:]
    res = run_chat(engine_bin, "Create a new list\nCreate a new list\n", "-p", "You document Python.", "-n", "8",
                   "-c", "512")
    answers = res.stdout.split(b"> ")[1:3]
    shown = visible(term.out)
    assert shown.count(b"Create a new list") >= 2
    at = 0
    for answer in answers:
        at = shown.index(answer.rstrip(b"\n"), at)  # the answers, in order
    msgs = [{"role": "system", "content": "You document Python."}]
    for q, a in zip(["Create a new list"] * 2, answers):
        msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a.rstrip(b"\n").decode()}]
    third = fresh_greedy_answer(model, msgs + [{"role": "user", "content": "Return the\nvalue"}], 8)
    assert third in shown[at:]
