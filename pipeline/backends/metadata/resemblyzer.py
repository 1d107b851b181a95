"""Speakers backend ``resemblyzer`` (embedded default, CPU, weights in the Resemblyzer wheel).

GE2E speaker embeddings (Wan et al. 2018; Resemblyzer 0.1.4) of 1.6 s windows every 0.5 s over the speech
of the clip (Resemblyzer's webrtcvad trimming of pauses), clustered by average-linkage agglomerative
clustering on cosine similarity, cut at ``speakers_threshold`` (0.70). A cluster counts as a speaker when it
holds >= 2 windows and >= ``speakers_min_share`` (20 %) of them; mixed windows at speaker changes form small
clusters that are dropped. So speakers with less than ~2 s of speech, or under 20 % of the clip, are not
counted, and clips under 1.6 s of speech are 1 speaker by construction. All windows of all clips of a batch
go through the encoder together (one LSTM forward per ``speakers_batch_windows`` windows). Overlap cannot be
measured with one embedding per window: ``overlap_ratio`` stays null. Source: ``resemblyzer-ge2e-0.1.4:ahc@0.70``.
"""
from __future__ import annotations

import numpy as np

from pipeline.backends.metadata.base import dist_version

RESEMBLYZER_SR = 16000


def cluster_count(emb: np.ndarray, threshold: float, min_share: float, min_windows: int) -> tuple[int, np.ndarray]:
    """(speakers, labels) for L2-normalised window embeddings: average-linkage AHC on cosine
    distance cut at 1 - threshold; clusters with < min_windows windows or < min_share of all
    windows are not speakers."""
    n = len(emb)
    if n < 2:
        return 1, np.ones(n, dtype=int)
    from scipy.cluster.hierarchy import fcluster, linkage

    lab = fcluster(linkage(emb.astype(np.float64), "average", metric="cosine"), t=1.0 - threshold,
                   criterion="distance")
    sizes = np.bincount(lab)
    keep = [c for c in range(1, len(sizes)) if sizes[c] >= min_windows and sizes[c] >= min_share * n]
    return max(1, len(keep)), lab


class ResemblyzerSpeakers:
    RATE = 2.0  # windows per second (hop 0.5 s)
    MIN_COVERAGE = 0.75

    name = "speakers"
    keys = ("n_speakers", "overlap_ratio", "n_speakers_source")
    columns = None
    uses_torch = True

    def __init__(self, threshold: float = 0.70, min_share: float = 0.20, min_windows: int = 2,
                 batch_windows: int = 256, device: str = "cpu"):
        import torch
        from resemblyzer import VoiceEncoder

        self.torch = torch
        self.encoder = VoiceEncoder(device, verbose=False)
        self.encoder.eval()
        self.threshold, self.min_share, self.min_windows = threshold, min_share, min_windows
        self.batch_windows = batch_windows
        self.source = f"resemblyzer-ge2e-{dist_version('Resemblyzer')}:ahc@{threshold:.2f}"

    @classmethod
    def from_config(cls, cfg, **context) -> "ResemblyzerSpeakers":
        return cls(cfg.speakers_threshold, cfg.speakers_min_share, 2, cfg.speakers_batch_windows, cfg.device)

    def _windows(self, x: np.ndarray, sr: int) -> np.ndarray:
        """Mel windows (n, 160, 40) over the speech of one clip (Resemblyzer's own preprocessing)."""
        from resemblyzer import audio as ra
        from resemblyzer.hparams import audio_norm_target_dBFS

        if sr != RESEMBLYZER_SR:
            import librosa

            x = librosa.resample(x, orig_sr=sr, target_sr=RESEMBLYZER_SR)
        x = np.clip(x.astype(np.float32), -1.0, 1.0)
        if not np.any(x):
            raise ValueError("silent (all-zero) audio")
        x = ra.normalize_volume(x, audio_norm_target_dBFS, increase_only=True)
        x = np.clip(x, -1.0, 1.0)
        w = ra.trim_long_silences(x)
        if w.size < 0.3 * RESEMBLYZER_SR:
            raise ValueError(f"too little speech for speaker embeddings ({w.size / RESEMBLYZER_SR:.2f} s after VAD)")
        wav_slices, mel_slices = self.encoder.compute_partial_slices(len(w), self.RATE, self.MIN_COVERAGE)
        if wav_slices[-1].stop > len(w):
            w = np.pad(w, (0, wav_slices[-1].stop - len(w)))
        mel = ra.wav_to_mel_spectrogram(w)
        return np.stack([mel[s] for s in mel_slices])

    def embed(self, mels: np.ndarray) -> np.ndarray:
        out = []
        with self.torch.inference_mode():
            for i in range(0, len(mels), self.batch_windows):
                out.append(self.encoder(self.torch.from_numpy(mels[i: i + self.batch_windows])).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 256), np.float32)

    def predict_batch(self, audios: list[np.ndarray], sr: int) -> list[dict | Exception]:
        res: list[dict | Exception] = [None] * len(audios)  # type: ignore[list-item]
        wins, owner = [], []
        for i, x in enumerate(audios):
            try:
                m = self._windows(x, sr)
                wins.append(m)
                owner += [i] * len(m)
            except Exception as e:  # noqa: BLE001
                res[i] = e
        if wins:
            emb = self.embed(np.concatenate(wins))
            owner_a = np.asarray(owner)
            for i in sorted(set(owner)):
                n, _ = cluster_count(emb[owner_a == i], self.threshold, self.min_share, self.min_windows)
                res[i] = {"n_speakers": int(n), "overlap_ratio": None, "n_speakers_source": self.source}
        return res
