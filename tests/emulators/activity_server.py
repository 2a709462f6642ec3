"""A scripted OpenAI streaming server whose GPU power is a known function of its own schedule.

The engine runs on a fixed grid of steps (`step_s`). A request that arrives in step k is admitted `lookahead_steps`
later; its prompt is prefilled in chunks of at most `prefill_tokens_per_step` per step, the last of which also
yields its first token; then it decodes one token every `decode_every` steps (1-3, drawn per request: requests of
mixed decode speed, as under speculative decoding), each streamed at the end of its step. Every step's power is

    P_k = idle_w + prefill_j_per_token * prefill_tokens_k / step_s + decode_j_per_token * decode_tokens_k / step_s
          + seq_w * running_k + context_w_per_token * context_tokens_k + noise_k    (noise_k ~ N(0, noise_w))

and a writer thread appends `<t_ns> <w>` for each step to `power_file` before the step starts: the NVML emulator's
`power file` directive follows that file, so the emulated counter and power readings (with whatever refresh and
window the GpuSpec sets) measure exactly this P(t). Since each request's schedule depends only on its own arrival
step, everything is decided when it arrives, and `truth()` gives each request's exact energy: its own activity
terms plus an equal share of idle power and noise over the steps it is in the server (arrival to last token),
split at its first token into prefill and decode.
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from tests.emulators.fake_server import FakeServer, Request, Script, Send, SleepUntil, sse
from tests.emulators.openai_server import info_reply


@dataclass(frozen=True)
class PowerModel:
    """Roughly an 8B model on one H100-class GPU: prefill ~10x cheaper per token than decode (ML.ENERGY's 0.07-0.45
    J/token at batch 512-8 bracket the decode cost), a 512-token prefill step ~600 W."""

    idle_w: float = 80.0
    prefill_j_per_token: float = 0.01
    decode_j_per_token: float = 0.3
    seq_w: float = 5.0
    noise_w: float = 3.0
    # Attention over the context each running sequence holds (prompt + tokens so far): a cost the activity model
    # does not have a term for, 0 by default; benchmarks/bench_activity.py sets it to show a misspecified model.
    context_w_per_token: float = 0.0


@dataclass
class _Plan:
    """One request's schedule: steps with (prefill tokens, decode tokens), running steps, first-token step."""

    arrival_step: int
    work: dict[int, tuple[int, int]] = field(default_factory=dict)
    running: range = range(0)
    first_step: int = 0
    token_steps: list[int] = field(default_factory=list)

    def context(self, k: int, prompt_tokens: int) -> int:
        """Tokens this sequence holds during step k: its prompt once prefilled, plus the tokens made before k."""
        made = sum(1 for s in self.token_steps if s < k)
        return (prompt_tokens if k > self.first_step else 0) + made


@dataclass(frozen=True)
class RequestTruth:
    energy_j: float
    prefill_energy_j: float
    prompt_tokens: int


class ActivityEngine:
    def __init__(
        self,
        power_file: Path,
        model: PowerModel = PowerModel(),
        *,
        step_s: float = 0.01,
        lookahead_steps: int = 50,
        prefill_tokens_per_step: int = 512,
        seed: int = 0,
    ) -> None:
        self.model = model
        self.step_ns = round(step_s * 1e9)
        self.lookahead = lookahead_steps
        self.budget = prefill_tokens_per_step
        self.power_file = Path(power_file)
        self.t0_ns = time.monotonic_ns()
        self.late_lines = 0  # steps whose line was written after the step began (the host was too slow)
        self._rng = random.Random(seed)
        self._noise: dict[int, float] = {}
        self._plans: dict[str, _Plan] = {}
        self._prompt: dict[str, int] = {}
        # per step: prefill tokens, decode tokens, running sequences, context tokens they hold
        self._steps: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        self._lock = threading.Lock()
        self._written = -1  # last step whose line is in the file
        self._stop = threading.Event()
        self._file = self.power_file.open("w", buffering=1)
        self._write_until(self.lookahead - 1, self.t0_ns)
        self._thread = threading.Thread(target=self._writer, daemon=True)

    # --- lifecycle ---
    def start(self) -> ActivityEngine:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._file.close()

    # --- schedule ---
    def step_start_ns(self, k: int) -> int:
        return self.t0_ns + k * self.step_ns

    def submit(self, request_id: str, prompt_tokens: int, max_tokens: int) -> list[int]:
        """Schedules a request arriving now; returns the instants (ns) at which its tokens are due."""
        with self._lock:
            now = time.monotonic_ns()
            arrival = (now - self.t0_ns) // self.step_ns
            k = max(arrival + self.lookahead, self._written + 1)
            plan = _Plan(arrival_step=int(arrival))
            left = max(prompt_tokens, 1)
            while left > 0:
                chunk = min(left, self.budget)
                plan.work[k] = (chunk, 0)
                left -= chunk
                k += 1
            plan.first_step = k - 1
            plan.token_steps = [plan.first_step]
            every = self._rng.choice((1, 2, 3))
            k = plan.first_step
            for _ in range(max_tokens - 1):
                k += every
                plan.work[k] = (0, 1)
                plan.token_steps.append(k)
            last = plan.token_steps[-1]
            plan.running = range(min(plan.work), last + 1)
            for step, (p, d) in plan.work.items():
                self._steps[step][0] += p
                self._steps[step][1] += d
            for step in plan.running:
                self._steps[step][2] += 1
                self._steps[step][3] += plan.context(step, prompt_tokens)
            self._plans[request_id] = plan
            self._prompt[request_id] = prompt_tokens
            return [self.step_start_ns(s + 1) for s in plan.token_steps]

    def power_w(self, k: int) -> float:
        m = self.model
        p, d, n, ctx = self._steps.get(k, (0, 0, 0, 0))
        step_s = self.step_ns * 1e-9
        return (
            m.idle_w
            + m.prefill_j_per_token * p / step_s
            + m.decode_j_per_token * d / step_s
            + m.seq_w * n
            + self._noise_w(k)
        )

    def _noise_w(self, k: int) -> float:
        if k not in self._noise:
            self._noise[k] = random.Random(k * 7919 + 17).gauss(0.0, self.model.noise_w)
        return self._noise[k]

    # --- the power file ---
    def _write_until(self, k_last: int, now: int) -> None:
        for k in range(self._written + 1, k_last + 1):
            if now > self.step_start_ns(k):
                self.late_lines += 1
            self._file.write(f"{self.step_start_ns(k)} {self.power_w(k)!r}\n")
        self._written = max(self._written, k_last)

    def _writer(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                now = time.monotonic_ns()
                # A request arriving from now on is admitted after this step at the earliest: its line is final.
                self._write_until((now - self.t0_ns) // self.step_ns + self.lookahead - 1, now)
            self._stop.wait(self.step_ns * 1e-9 * 2)

    # --- ground truth ---
    def truth(self, request_id: str) -> RequestTruth:
        """Exact energy of a request: its activity terms plus its share of idle power and noise over the steps it is
        in the server (arrival to last token), among all requests in the server then."""
        m = self.model
        plan = self._plans[request_id]
        present = defaultdict(int)
        for other in self._plans.values():
            for k in range(other.arrival_step, other.running.stop):
                present[k] += 1
        step_s = self.step_ns * 1e-9
        energy = prefill = 0.0
        for k in range(plan.arrival_step, plan.running.stop):
            p, d = plan.work.get(k, (0, 0))
            e = m.prefill_j_per_token * p + m.decode_j_per_token * d
            if k in plan.running:
                e += (m.seq_w + m.context_w_per_token * plan.context(k, self._prompt[request_id])) * step_s
            e += (m.idle_w + self._noise_w(k)) * step_s / present[k]
            energy += e
            if k <= plan.first_step:
                prefill += e
        return RequestTruth(energy, prefill, self._prompt[request_id])

    def energy_j(self, t0_ns: int, t1_ns: int) -> float:
        """Exact energy of the schedule between two instants."""
        total = 0.0
        for k in range((t0_ns - self.t0_ns) // self.step_ns, (t1_ns - self.t0_ns) // self.step_ns + 1):
            lo, hi = max(t0_ns, self.step_start_ns(k)), min(t1_ns, self.step_start_ns(k + 1))
            if hi > lo:
                total += self.power_w(k) * (hi - lo) * 1e-9
        return total


def activity_server(engine: ActivityEngine) -> FakeServer:
    """Streams each completion on the engine's schedule: the first token when its prefill ends, then one per decode
    step; a usage chunk with the prompt's word count and the tokens streamed."""

    def handler(req: Request) -> Script:
        if (info := info_reply(req, None)) is not None:
            return info
        body = req.json
        prompt = body.get("prompt") or " ".join(m["content"] for m in body.get("messages", []))
        n_prompt, n_out = len(prompt.split()), int(body["max_tokens"])
        rid = req.headers.get("x-request-id", f"anon-{id(req)}")
        due = engine.submit(rid, n_prompt, n_out)
        steps: list = []
        for i, t in enumerate(due):
            finish = "length" if i == len(due) - 1 else None
            steps += [SleepUntil(t), Send(sse({"choices": [{"index": 0, "text": f" t{i}", "finish_reason": finish}]}))]
        usage = {"prompt_tokens": n_prompt, "completion_tokens": n_out}
        steps += [Send(sse({"choices": [], "usage": usage})), Send(sse("[DONE]"))]
        return Script(steps)

    return FakeServer(handler)
