"""``llama-cpp-batched``: llama.cpp in process, many sequences decoded together (the CPU default).

Through llama-cpp-python's low-level bindings, on one llama.cpp context:
- continuous batching: up to ``slots`` requests are live at once; every ``llama_decode`` step carries one
  token for every decoding sequence plus a chunk of the prompts being read, so the weights are read once
  per step for all of them (decoding one sequence is memory-bound: ``bench/bench_llm.py`` prints the bound);
- shared prompt prefixes computed once: requests whose conversations share everything but the last turn
  (one system prompt and its few-shot turns) are grouped, their common token prefix is decoded once into a
  spare sequence and copied into every slot that needs it (``llama_memory_seq_cp``: the KV cells are shared,
  not duplicated); only the last turn is read per request;
- finished prompts kept: when a request ends, the KV cells of its prompt stay under a sequence id of their own
  (up to ``keep`` prompts, least recently used out first, bounded in cells); a later request whose prompt starts
  with the same tokens (a retry of the same prompt with a new seed, a second question about the same passage)
  copies that prefix and reads only the rest. What llama-server's ``cache_prompt`` does per slot, here across
  all slots;
- a sampler per sequence: top-k 40, top-p, min-p 0.05, temperature, seeded by the request (greedy at
  temperature 0), and for JSON requests a llama.cpp grammar built from the request's JSON schema: the grammar
  is asked about the 40 most likely tokens first and about the whole vocabulary only when it rejects all of
  them (what llama.cpp's own samplers do to keep grammars cheap).

Memory is sized by slots, not by the dataset: the KV cache holds ``slots * n_ctx`` tokens; a finished
request's generated cells are freed at once and its kept prompt holds at most ``2 * n_ctx`` cells in all (dropped
first when the cache is full). Answers come back in request order whatever order they finish in.
Completions have the finish reason (``stop`` / ``length``), token counts (``cached_tokens``: prompt tokens
taken from a shared prefix) and, when asked for, the top log-probabilities of every generated token.
"""
from __future__ import annotations

import ctypes
import json
import logging
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.backends.llm.base import ChatRequest, Completion, Usage
from pipeline.core.config import LLMConfig
from pipeline.core.model_cache import resolve

logger = logging.getLogger(__name__)

TOP_K = 40
MIN_P = 0.05
MIN_SHARED_PREFIX = 16  # tokens: a shorter common prefix is not worth a sequence of its own
_TOKEN_DATA = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])
_BACKEND_READY = False


def _property_order(schema: Any) -> list[str]:
    """Property names in the order the schema lists them (json_schema_to_gbnf sorts them by name otherwise)."""
    names: list[str] = []

    def walk(x: Any) -> None:
        if isinstance(x, dict):
            for k in (x.get("properties") or {}):
                if k not in names:
                    names.append(k)
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(schema)
    return names


class LlamaBatchedError(RuntimeError):
    """The model or its context could not be made, or a request does not fit the context."""


@dataclass
class _Seq:
    index: int  # the request's position in the caller's list
    req: ChatRequest
    tokens: list[int]
    slot: int
    pos: int  # tokens of this sequence already in the KV cache
    group: str | None
    cached: int = 0
    cached_from_kept: bool = False  # its prompt started from a kept prompt (not from the group's prefix sequence)
    generated: list[int] = field(default_factory=list)
    text: bytearray = field(default_factory=bytearray)
    logprobs: list[dict[str, float]] = field(default_factory=list)
    grammar: Any = None
    rng: Any = None
    finish: str | None = None
    last: int | None = None  # the sampled token not yet fed back
    head: list[int] = field(default_factory=list)  # the shared prefix's tokens (group: its key)
    done: Any = None  # threading.Event set when result (or error) is there
    result: Completion | None = None
    error: BaseException | None = None

    @property
    def prefilling(self) -> bool:
        return self.pos < len(self.tokens)


class LlamaBatchedEngine:
    name = "llama-cpp-batched"
    thread_safe = True  # complete() may be called from several threads: their requests share the decode steps

    def __init__(self, model: str, *, n_ctx: int = 2048, n_threads: int = 2, slots: int = 8, n_batch: int = 512,
                 kv_unified: bool = True, keep: int = 64):
        """Sampling is seeded per request (ChatRequest.seed); ``kv_unified`` False gives every sequence its own
        KV stream (measured slower: seq_cp then copies whole streams); ``keep``: finished prompts whose KV cells
        are kept for reuse (0: none; needs ``kv_unified``)."""
        import llama_cpp as L

        global _BACKEND_READY
        self.L = L
        self.model_id = model
        self.usage = Usage()
        self.slots, self.n_ctx, self.n_batch = int(slots), int(n_ctx), int(n_batch)
        self.spare = 6  # sequences that hold shared prefixes (system prompts: description, QA per pair count, round trip, ...)
        self.keep = int(keep) if kv_unified else 0  # sequences that hold finished prompts (reused by later requests)
        self.keep_cells = 2 * self.n_ctx  # cells those may hold beyond what they share with a prefix sequence
        if not _BACKEND_READY:
            from llama_cpp._logger import set_verbose

            set_verbose(False)  # llama.cpp's own log: errors only (it prints every tensor otherwise)
            L.llama_backend_init()
            _BACKEND_READY = True
        path = resolve(model)
        self._model = L.llama_model_load_from_file(path.encode(), L.llama_model_default_params())
        if not self._model:
            raise LlamaBatchedError(f"llama.cpp could not load {path} (llm.model must be a GGUF file: embedded:<name> or a path)")
        cp = L.llama_context_default_params()
        # unified: one cache shared by every sequence; else a stream of n_ctx cells per sequence (spares included)
        cp.n_ctx = (self.slots if kv_unified else self.slots + self.spare) * self.n_ctx
        cp.n_batch = cp.n_ubatch = self.n_batch
        cp.n_seq_max = self.slots + self.spare + self.keep
        cp.n_threads = cp.n_threads_batch = int(n_threads)
        cp.kv_unified = bool(kv_unified)
        cp.no_perf = True
        self._ctx = L.llama_init_from_model(self._model, cp)
        if not self._ctx:
            L.llama_model_free(self._model)
            raise LlamaBatchedError(f"llama.cpp could not make a context of {cp.n_ctx} tokens x {cp.n_seq_max} sequences")
        self._mem = L.llama_get_memory(self._ctx)
        self._vocab = L.llama_model_get_vocab(self._model)
        self.n_vocab = L.llama_vocab_n_tokens(self._vocab)
        self._batch = L.llama_batch_init(self.n_batch, 0, 1)
        self._pieces: dict[int, bytes] = {}
        self._grammars: dict[str, str] = {}
        self._heads: dict[str, list[int]] = {}  # conversation before the last turn -> its tokens (bounded below)
        self._format = self._chat_formatter()
        self._eos_text = self.piece(L.llama_vocab_eos(self._vocab), special=True).decode(errors="replace") or "\x00"
        self._cv = threading.Condition()
        self._queue: deque[_Seq] = deque()
        self._live: list[_Seq] = []
        self._free_slots = deque(range(self.slots))
        self._free_spare = deque(range(self.slots, self.slots + self.spare))
        self._prefixes: OrderedDict[str, tuple[int, list[int]]] = OrderedDict()  # key -> (spare seq, tokens), LRU
        first_kept = self.slots + self.spare
        self._free_kept = deque(range(first_kept, first_kept + self.keep))
        self._kept: OrderedDict[int, tuple[np.ndarray, int]] = OrderedDict()  # seq -> (prompt tokens, own cells), LRU
        self._users: dict[str, int] = {}
        self._thread: threading.Thread | None = None
        self._closing = False
        self.steps = {"steps": 0, "sequences": 0, "prompt_tokens": 0, "kept_hits": 0, "kept_tokens": 0}  # decode steps, sequences decoded in them,
        # prompt tokens read in them (prefixes included): sequences / steps is the mean batch width; kept_hits:
        # requests that started from a kept prompt, kept_tokens: the prompt tokens that saved

    @classmethod
    def from_config(cls, cfg: LLMConfig, **context: Any) -> "LlamaBatchedEngine":
        return cls(cfg.model, n_ctx=cfg.n_ctx, n_threads=cfg.n_threads, slots=cfg.slots, keep=cfg.kept_prompts)

    # ---- text <-> tokens
    def _chat_formatter(self):
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        raw = self.L.llama_model_chat_template(self._model, None)
        if not raw:
            raise LlamaBatchedError(f"{self.model_id} has no chat template in its metadata")
        eos = self.piece(self.L.llama_vocab_eos(self._vocab), special=True).decode(errors="replace")
        bos = self.piece(self.L.llama_vocab_bos(self._vocab), special=True).decode(errors="replace")
        return Jinja2ChatFormatter(raw.decode(), eos_token=eos, bos_token=bos)

    def tokenize(self, text: str) -> list[int]:
        """Tokens of a formatted chat prompt: special tokens parsed, none added (the chat template writes the BOS
        where the model wants one, as llama-cpp-python's own chat path does)."""
        b = text.encode()
        buf = (self.L.llama_token * (len(b) + 16))()
        n = self.L.llama_tokenize(self._vocab, b, len(b), buf, len(buf), False, True)
        if n < 0:
            buf = (self.L.llama_token * (-n))()
            n = self.L.llama_tokenize(self._vocab, b, len(b), buf, len(buf), False, True)
        return list(buf[:n])

    def piece(self, tok: int, special: bool = False) -> bytes:
        key = tok if not special else -1 - tok
        if key not in self._pieces:
            buf = ctypes.create_string_buffer(64)
            n = self.L.llama_token_to_piece(self._vocab, tok, buf, len(buf), 0, special)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = self.L.llama_token_to_piece(self._vocab, tok, buf, len(buf), 0, special)
            self._pieces[key] = buf.raw[:n]
        return self._pieces[key]

    def prompt_tokens(self, r: ChatRequest) -> list[int]:
        return self.tokenize(self._format(messages=r.messages).prompt)

    # ---- sampling
    def _gbnf(self, schema: dict) -> str:
        """The llama.cpp grammar of a JSON schema, properties in the schema's own order (question before answer)."""
        from llama_cpp.llama_grammar import json_schema_to_gbnf

        key = json.dumps(schema, sort_keys=True)
        if key not in self._grammars:
            try:
                self._grammars[key] = json_schema_to_gbnf(json.dumps(schema), prop_order=_property_order(schema))
            except Exception as e:  # noqa: BLE001 - a schema the converter does not support
                raise LlamaBatchedError(f"cannot turn the JSON schema into a grammar ({e}): {key[:200]}") from e
        return self._grammars[key]

    def _grammar(self, schema: dict):
        key = json.dumps(schema, sort_keys=True)
        g = self.L.llama_sampler_init_grammar(self._vocab, self._gbnf(schema).encode(), b"root")
        if not g:
            raise LlamaBatchedError(f"llama.cpp rejected the grammar of schema {key[:200]}")
        return g

    def _allowed(self, grammar, ids: np.ndarray, logits: np.ndarray) -> np.ndarray:
        """Mask of the tokens ``ids`` the grammar allows next."""
        data = np.zeros(len(ids), dtype=_TOKEN_DATA)
        data["id"], data["logit"] = ids, logits
        arr = self.L.llama_token_data_array(data.ctypes.data_as(self.L.llama_token_data_p), len(ids), -1, False)
        self.L.llama_sampler_apply(grammar, ctypes.byref(arr))
        return np.isfinite(data["logit"])

    def _sample(self, s: _Seq, logits: np.ndarray) -> int | None:
        """The next token of ``s`` (None when the grammar allows nothing)."""
        r = s.req
        if r.top_logprobs:
            lse = float(np.logaddexp.reduce(logits.astype(np.float64)))
            top = np.argpartition(logits, -r.top_logprobs)[-r.top_logprobs:]
            top = top[np.argsort(-logits[top])]
            s.logprobs.append({self.piece(int(t)).decode(errors="replace"): float(logits[t] - lse) for t in top})
        ids = np.argpartition(logits, -TOP_K)[-TOP_K:]
        if s.grammar is not None:
            ok = self._allowed(s.grammar, ids, logits[ids])
            if not ok.any():  # none of the likely tokens fits the grammar: ask it about every token
                every = np.arange(self.n_vocab, dtype=np.int32)
                allowed = every[self._allowed(s.grammar, every, logits)]
                if not len(allowed):
                    return None
                ids = allowed[np.argsort(-logits[allowed])[:TOP_K]]
            else:
                ids = ids[ok]
        ids = ids[np.argsort(-logits[ids])]
        if r.temperature <= 0 or len(ids) == 1:
            return int(ids[0])
        z = logits[ids].astype(np.float64) / r.temperature
        p = np.exp(z - z[0])
        p /= p.sum()
        keep = max(1, int(np.searchsorted(np.cumsum(p), r.top_p) + 1)) if r.top_p < 1 else len(ids)
        keep = min(keep, max(1, int((p >= MIN_P * p[0]).sum())))
        p = p[:keep] / p[:keep].sum()
        return int(ids[s.rng.choice(keep, p=p)])

    # ---- the batch loop (one scheduler thread owns the context; callers wait for their answers)
    def _add(self, tok: int, pos: int, seq: int, logits: bool) -> int:
        b, i = self._batch, self._batch.n_tokens
        b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = tok, pos, 1, logits
        b.seq_id[i][0] = seq
        b.n_tokens = i + 1
        return i

    def _decode(self) -> None:
        rc = self.L.llama_decode(self._ctx, self._batch)
        if rc == 1 and self._kept:  # no room in the KV cache: the kept prompts go first, then the step again
            while self._kept:
                self._drop_kept()
            rc = self.L.llama_decode(self._ctx, self._batch)
        if rc != 0:
            raise LlamaBatchedError(f"llama_decode failed ({rc}{': the KV cache is full' if rc == 1 else ''}; "
                                    f"{self.slots} slots x n_ctx {self.n_ctx})")

    def _shared_prefix(self, r: ChatRequest, tokens: list[int]) -> tuple[str | None, list[int]]:
        """(key, tokens) of the part of the prompt other requests can share: the conversation before the last
        turn (system prompt, few-shot turns), as the tokens the full prompt starts with."""
        if len(r.messages) < 2:
            return None, []
        key = json.dumps(r.messages[:-1], sort_keys=True)
        head = self._heads.get(key)
        if head is None:  # every request of a stage shares a few system prompts: tokenized once each
            if len(self._heads) > 256:
                self._heads.clear()
            head = self._heads[key] = self.tokenize(self._format(messages=r.messages[:-1]).prompt.rsplit(self._eos_text, 1)[0])
        n, m = 0, min(len(head), len(tokens) - 1)  # the last prompt token is read by the request itself
        while n < m and head[n] == tokens[n]:
            n += 1
        return (key, tokens[:n]) if n >= MIN_SHARED_PREFIX else (None, [])

    def complete(self, requests: list[ChatRequest]) -> list[Completion]:
        """Answers in request order. Thread-safe: requests of several callers are decoded together."""
        if not requests:
            return []
        if self._ctx is None:
            raise LlamaBatchedError("the engine is closed")
        jobs = []
        for i, r in enumerate(requests):
            toks = self.prompt_tokens(r)
            if len(toks) + r.max_tokens > self.n_ctx:
                raise LlamaBatchedError(f"request {i}: {len(toks)} prompt tokens + max_tokens {r.max_tokens} > llm.n_ctx "
                                        f"{self.n_ctx} (the context of one slot)")
            if r.json_schema is not None:
                self._gbnf(r.json_schema)  # an unsupported schema fails here, in the caller, before anything is queued
            key, head = self._shared_prefix(r, toks)
            jobs.append(_Seq(i, r, toks, -1, 0, key, head=head, done=threading.Event()))
        jobs.sort(key=lambda j: (j.group or "", j.tokens))  # requests sharing a prefix are admitted together
        with self._cv:
            self._queue.extend(jobs)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="llama-batched", daemon=True)
                self._thread.start()
            self._cv.notify_all()
        for j in jobs:
            j.done.wait()
        bad = next((j.error for j in jobs if j.error is not None), None)
        if bad is not None:
            raise LlamaBatchedError(f"llama.cpp failed: {bad}") from bad
        out: list[Completion | None] = [None] * len(requests)
        for j in jobs:
            out[j.index] = j.result
        return out  # type: ignore[return-value]

    def chat(self, requests: list[ChatRequest]) -> list[str]:
        return [c.text for c in self.complete(requests)]

    def _prefix_seq(self, s: _Seq) -> int | None:
        """The spare sequence holding ``s``'s shared prefix (decoded now if it is not cached; the least
        recently used idle prefix makes room). None when every spare holds a prefix in use."""
        L = self.L
        hit = self._prefixes.get(s.group)
        if hit is not None and hit[1] == s.head:
            self._prefixes.move_to_end(s.group)
            return hit[0]
        if hit is not None:  # same conversation, other tokens (should not happen): recompute
            seq = self._prefixes.pop(s.group)[0]
        elif self._free_spare:
            seq = self._free_spare.popleft()
        else:
            idle = next((k for k in self._prefixes if self._users.get(k, 0) == 0), None)
            if idle is None:
                return None
            seq = self._prefixes.pop(idle)[0]
        L.llama_memory_seq_rm(self._mem, seq, -1, -1)
        for start in range(0, len(s.head), self.n_batch):
            self._batch.n_tokens = 0
            for p in range(start, min(start + self.n_batch, len(s.head))):
                self._add(s.head[p], p, seq, False)
            self._decode()
        self._prefixes[s.group] = (seq, s.head)
        return seq

    def _admit(self) -> None:
        L = self.L
        while self._queue and self._free_slots:
            s = self._queue[0]
            kept, n = self._best_kept(s.tokens)
            src = None
            if kept is None or n <= len(s.head):  # no kept prompt shares more than the system prompt does
                kept = None
                src = self._prefix_seq(s) if s.group is not None else None
                if s.group is not None and src is None:
                    break  # wait until a prefix in use is released
            self._queue.popleft()
            s.slot = self._free_slots.popleft()
            L.llama_memory_seq_rm(self._mem, s.slot, -1, -1)
            if kept is not None:  # the prefix sequence is neither needed nor decoded for it
                L.llama_memory_seq_cp(self._mem, kept, s.slot, 0, n)
                self._kept.move_to_end(kept)
                s.pos = s.cached = n
                s.cached_from_kept = True
                self.steps["kept_hits"] += 1
                self.steps["kept_tokens"] += n - len(s.head)
            elif src is not None:
                L.llama_memory_seq_cp(self._mem, src, s.slot, -1, -1)
                s.pos = s.cached = len(s.head)
                self._users[s.group] = self._users.get(s.group, 0) + 1
            s.rng = np.random.default_rng(s.req.seed)
            if s.req.json_schema is not None:
                s.grammar = self._grammar(s.req.json_schema)
            self._live.append(s)

    def _step(self) -> None:
        """One llama_decode: a token for every decoding sequence, then prompt chunks in the room left."""
        L = self.L
        self._batch.n_tokens = 0
        at: dict[int, int] = {}
        for s in self._live:
            if not s.prefilling:
                at[id(s)] = self._add(s.last, s.pos, s.slot, True)
        decoding = self._batch.n_tokens
        room = self.n_batch - decoding
        for s in self._live:
            if s.prefilling and room > 0:
                end = min(len(s.tokens), s.pos + room)
                for p in range(s.pos, end):
                    j = self._add(s.tokens[p], p, s.slot, p == len(s.tokens) - 1)
                room -= end - s.pos
                s.pos = end
                if end == len(s.tokens):
                    at[id(s)] = j
        self._decode()
        self.steps["steps"] += 1
        self.steps["sequences"] += len(at)
        self.steps["prompt_tokens"] += self._batch.n_tokens - decoding
        for s in list(self._live):
            if id(s) not in at:
                continue
            if s.last is not None:
                s.pos += 1
            logits = np.ctypeslib.as_array(L.llama_get_logits_ith(self._ctx, at[id(s)]), shape=(self.n_vocab,))
            tok = self._sample(s, logits)
            if tok is None or L.llama_vocab_is_eog(self._vocab, tok):
                s.finish = "stop"
            else:
                s.generated.append(tok)
                s.text += self.piece(tok)
                if s.grammar is not None:
                    L.llama_sampler_accept(s.grammar, tok)
                s.last = tok
                if len(s.generated) >= s.req.max_tokens:
                    s.finish = "length"
            if s.finish:
                self._release(s)
                s.result = self._finish(s)
                s.done.set()

    # ---- kept prompts
    def _best_kept(self, tokens: list[int]) -> tuple[int | None, int]:
        """The kept prompt sharing the longest token prefix with ``tokens`` (at most all but the last token, which
        the request reads itself to get its first logits), and that prefix's length."""
        best, n_best = None, 0
        if not self._kept:
            return best, n_best
        t = np.asarray(tokens, dtype=np.int32)
        for seq, (k, _) in self._kept.items():
            m = min(len(k), len(t) - 1)
            if m <= n_best:
                continue
            diff = np.flatnonzero(k[:m] != t[:m])
            n = int(diff[0]) if len(diff) else m
            if n > n_best:
                best, n_best = seq, n
        return best, n_best

    def _drop_kept(self, seq: int | None = None) -> None:
        """Forget a kept prompt (the least recently used one by default) and free its cells."""
        if seq is None:
            seq = next(iter(self._kept))
        self._kept.pop(seq)
        self.L.llama_memory_seq_rm(self._mem, seq, -1, -1)
        self._free_kept.append(seq)

    def _keep_prompt(self, s: _Seq) -> None:
        """Keep the KV cells of ``s``'s prompt under a sequence of their own (before its slot is freed)."""
        own = len(s.tokens) - len(s.head)
        if not self.keep or own <= 0 or own > self.keep_cells:
            return
        t = np.asarray(s.tokens, dtype=np.int32)
        for seq, (k, _) in list(self._kept.items()):  # one kept copy per prompt: the longer one stays
            m = min(len(k), len(t))
            if np.array_equal(k[:m], t[:m]):
                if len(k) >= len(t):
                    self._kept.move_to_end(seq)
                    return
                self._drop_kept(seq)
        while self._kept and (not self._free_kept or sum(c for _, c in self._kept.values()) + own > self.keep_cells):
            self._drop_kept()
        seq = self._free_kept.popleft()
        self.L.llama_memory_seq_cp(self._mem, s.slot, seq, 0, len(s.tokens))
        self._kept[seq] = (t, own)

    def _release(self, s: _Seq) -> None:
        self._live.remove(s)
        if s.error is None and not s.prefilling:
            self._keep_prompt(s)
        self.L.llama_memory_seq_rm(self._mem, s.slot, -1, -1)
        self._free_slots.append(s.slot)
        if s.cached and not s.cached_from_kept:
            self._users[s.group] -= 1
        if s.grammar is not None:
            self.L.llama_sampler_free(s.grammar)
            s.grammar = None

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._live and not self._closing:
                    self._cv.wait()
                if self._closing:
                    self._reset(LlamaBatchedError("the engine was closed"))
                    return
            try:
                with self._cv:
                    self._admit()
                self._step()
            except Exception as e:  # noqa: BLE001 - the callers waiting now get the error; the next call starts clean
                logger.error("llama-cpp-batched: decoding failed (%s); failing the %d request(s) in flight",
                             e, len(self._live) + len(self._queue))
                with self._cv:
                    self._reset(e)
                    self._thread = None
                return

    def _reset(self, error: BaseException) -> None:
        """Fail every live and queued request with ``error``; free every slot, prefix and the KV cache."""
        for s in list(self._live) + list(self._queue):
            if s.grammar is not None:
                self.L.llama_sampler_free(s.grammar)
                s.grammar = None
            s.error = error
            s.done.set()
        self._live.clear()
        self._queue.clear()
        self._prefixes.clear()
        self._users.clear()
        self._kept.clear()
        self._free_kept = deque(range(self.slots + self.spare, self.slots + self.spare + self.keep))
        self._free_slots = deque(range(self.slots))
        self._free_spare = deque(range(self.slots, self.slots + self.spare))
        self.L.llama_memory_clear(self._mem, True)

    def _finish(self, s: _Seq) -> Completion:
        c = Completion(text=s.text.decode("utf-8", errors="replace"), finish_reason=s.finish,
                       prompt_tokens=len(s.tokens), completion_tokens=len(s.generated), cached_tokens=s.cached,
                       top_logprobs=s.logprobs if s.req.top_logprobs else None)
        self.usage.add(c.prompt_tokens, c.completion_tokens, c.cached_tokens, truncated=c.finish_reason == "length")
        return c

    def close(self) -> None:
        """Fail what is still in flight, stop the scheduler thread, free the context and the model."""
        L = self.L
        cv = getattr(self, "_cv", None)
        if cv is not None:
            with cv:
                self._closing = True
                cv.notify_all()
            if self._thread is not None:
                self._thread.join()
                self._thread = None
        if getattr(self, "_batch", None) is not None:
            L.llama_batch_free(self._batch)
            self._batch = None
        if getattr(self, "_ctx", None):
            L.llama_free(self._ctx)
            self._ctx = None
        if getattr(self, "_model", None):
            L.llama_model_free(self._model)
            self._model = None

    def __del__(self) -> None:  # noqa: D105
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


__all__ = ["LlamaBatchedEngine", "LlamaBatchedError"]
