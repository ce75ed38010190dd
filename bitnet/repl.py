"""The chat of ``run_inference.py -cnv``: lines typed (or piped) in, answers streamed out, on
BitNetModel.chat.

On a terminal the line is read with prompt_toolkit: arrow keys and Emacs keys edit it, Up/Down
recall the session's earlier messages, Esc then Enter (Alt-Enter) puts a newline in the message.
Input that is not a terminal is read line by line with no line editor, so pipes and files work as
with bitnet-cli -cnv, and give the same output: ``> `` before each message, the answer and a
newline after it, a last newline at the end.

Ctrl-C during an answer stops it (the part given stays in the conversation) and the chat goes on;
Ctrl-C or Ctrl-D at the prompt, ``/exit`` or the end of the input quit (exit code 0). When the
conversation outgrows the context, its oldest exchanges are dropped (never the system prompt),
with a note on stderr; a message that does not fit even alone is refused and the chat goes on.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from bitnet.model import BitNetModel, GenerationConfig


def _terminal_reader() -> Callable[[], str | None]:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import InMemoryHistory
    from prompt_toolkit.key_binding import KeyBindings

    keys = KeyBindings()

    @keys.add("escape", "enter")
    def _newline(event) -> None:
        event.current_buffer.insert_text("\n")

    session = PromptSession(history=InMemoryHistory(), key_bindings=keys)

    def read() -> str | None:
        try:
            return session.prompt("> ")
        except (EOFError, KeyboardInterrupt):
            return None

    return read


def _pipe_reader() -> Callable[[], str | None]:
    def read() -> str | None:
        sys.stdout.write("> ")
        sys.stdout.flush()
        line = sys.stdin.readline()
        return None if not line else line.rstrip("\n")

    return read


class _Stats:
    """Prompt and generation speed over the session, as bitnet-cli reports them."""

    def __init__(self) -> None:
        self.n_fed = self.n_gen = 0
        self.t_fed = self.t_gen = 0.0

    def report(self) -> None:
        for name, n, t in (("prompt eval:", self.n_fed, self.t_fed), ("generation: ", self.n_gen, self.t_gen)):
            print(f"{name} {n} tokens in {t:.3f} s ({n / t if t > 0 else 0.0:.2f} tokens/s)", file=sys.stderr)


def _fit(model: BitNetModel, history: list[dict], room: int) -> bool:
    """Drops the oldest exchanges of history (after the system prompt) until the conversation
    leaves room tokens for the answer; False, with the new message withdrawn, when it cannot fit
    even alone."""
    first = 1 if history and history[0]["role"] == "system" else 0
    dropped = 0
    while True:
        n = len(model.chat_tokens(history))
        older = len(history) - 1 > first
        if n + room <= model.n_ctx or (not older and n < model.n_ctx):
            if dropped:
                print(f"[context full: dropped the {dropped} oldest message{'s' if dropped > 1 else ''}]",
                      file=sys.stderr)
            return True
        if not older:
            print(f"[this message needs {n} tokens with the system prompt, more than the context of {model.n_ctx}: "
                  "use a larger -c or a shorter message]", file=sys.stderr)
            history.pop()
            return False
        k = 2 if history[first + 1]["role"] == "assistant" and first + 2 < len(history) else 1
        del history[first:first + k]
        dropped += k


def run_chat(model: BitNetModel, system_prompt: str, config: GenerationConfig) -> int:
    """Runs the chat until the user quits; returns the exit code (0)."""
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    read = _terminal_reader() if interactive else _pipe_reader()
    print(f"chat (template {model.chat_template_name or '?'}): type a message and press Enter"
          f"{' (Esc Enter: a new line, Up/Down: earlier messages)' if interactive else ''}; /exit, Ctrl-D or "
          "Ctrl-C at the prompt quits, Ctrl-C during an answer stops it", file=sys.stderr)
    history = [{"role": "system", "content": system_prompt}] if system_prompt else []
    n = config.max_new_tokens
    room = min(n if n else model.n_ctx // 4, model.n_ctx // 2)
    stats = _Stats()
    while True:
        line = read()
        if line is None or line == "/exit":
            break
        if not line:
            continue
        history.append({"role": "user", "content": line})
        if not _fit(model, history, room):
            continue
        t0 = time.perf_counter()
        t_first = None
        try:
            for piece in model.chat(history, config=config, stream=True):
                if t_first is None:
                    t_first = time.perf_counter()
                sys.stdout.write(piece)
                sys.stdout.flush()
        except KeyboardInterrupt:
            pass  # the answer stops here; its text so far is in history
        t_end = time.perf_counter()
        sys.stdout.write("\n")
        sys.stdout.flush()
        t_first = t_first or t_end
        stats.n_fed += model.last_eval_tokens
        stats.t_fed += t_first - t0
        stats.n_gen += model.last_generated_tokens
        stats.t_gen += t_end - t_first
    sys.stdout.write("\n")
    sys.stdout.flush()
    stats.report()
    return 0
