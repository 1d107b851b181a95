"""Explicit inputs: --input / --text-input replace the profile's, nothing of the samples mixed in (issue 21)."""
from __future__ import annotations

import json

import pytest

from pipeline.core.config import load_profile
from pipeline.core.errors import InputError, ProfileError, UserError
from pipeline.run.inputs import check_inputs, load_user_profile, new_profile, preflight


def test_profile_inputs_when_none_given():
    p, notes = load_user_profile("en")
    base = load_profile("en")
    assert (p.input, p.tts.input) == (base.input, base.tts.input)
    assert any("from profile" in n for n in notes)


def test_input_alone_drops_the_sample_text_corpus(corpus):
    p, notes = load_user_profile("en", input=str(corpus / "manifest.jsonl"))
    assert p.input == str(corpus / "manifest.jsonl")
    assert p.tts.input is None
    assert any("is not used when --input is given" in n and load_profile("en").tts.input in n for n in notes)


def test_text_input_alone_drops_the_sample_audio(corpus):
    p, _ = load_user_profile("en", text_input=str(corpus / "instructions.jsonl"))
    assert p.input is None and p.tts.input == str(corpus / "instructions.jsonl")
    assert check_inputs(p).n_texts == 3 and check_inputs(p).sources == []


def test_overrides_win_over_explicit_inputs(corpus):
    p, _ = load_user_profile("en", input=str(corpus / "manifest.jsonl"), overrides={"tts.input": str(corpus / "instructions.jsonl")})
    assert p.tts.input == str(corpus / "instructions.jsonl")


def test_check_inputs_counts_and_notes_missing_files(corpus, tmp_path):
    m = tmp_path / "m.jsonl"
    m.write_text("\n".join(json.dumps({"path": p}) for p in [str(corpus / "audio" / "s0.wav"), "gone.wav"]) + "\n")
    p, _ = load_user_profile("en", input=str(m))
    got = check_inputs(p)
    assert len(got.sources) == 2 and any("1 of 2 listed file(s) do not exist" in n for n in got.notes)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="lists no files"):
        check_inputs(load_user_profile("en", input=str(tmp_path / "empty"))[0])
    with pytest.raises(InputError, match="nothing to do"):
        check_inputs(p.model_copy(update={"input": None}))


def test_unknown_key_hint_and_nested_section(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("language: en\nname: x\nasr:\n  beam_sise: 2\n")
    with pytest.raises(ProfileError) as e:
        load_user_profile(None, f)
    assert "unknown profile key 'asr.beam_sise'" in str(e.value) and e.value.hint == "did you mean 'asr.beam_size'?"
    f.write_text("language: en\nname: x\nlanguge: en\n")
    with pytest.raises(ProfileError, match="'languge'"):
        load_user_profile(None, f)
    with pytest.raises(ProfileError, match="not --lang 'de'"):
        load_user_profile("de", new_profile("y", "en", tmp_path / "y.yaml"))


def test_new_profile_keeps_comments_and_resolves_paths_next_to_it(corpus, tmp_path):
    (tmp_path / "proj").mkdir()
    path = new_profile("proj-a", "en", tmp_path / "proj" / "a.yaml", input=str(corpus / "audio"))
    text = path.read_text()
    assert "# production:" in text and "samples/" not in text
    with pytest.raises(UserError, match="already exists"):
        new_profile("proj-a", "en", path)
    # a relative input in a user's profile is relative to the profile's folder
    (tmp_path / "proj" / "b.yaml").write_text(text.replace(str(corpus / "audio"), "../audio_link"))
    (tmp_path / "audio_link").symlink_to(corpus / "audio")
    p, _ = load_user_profile(None, tmp_path / "proj" / "b.yaml")
    assert p.input == str((tmp_path / "audio_link").resolve())
    assert p.output_dir == str(tmp_path / "proj" / "data") and p.tts.input is None and p.name == "proj-a"
    assert len(check_inputs(p).sources) == 11


def test_preflight_refuses_a_folder_with_another_run(corpus, tmp_path):
    from pipeline.run.plan import PlanMismatch, Run

    a, _ = load_user_profile("en", input=str(corpus / "audio" / "s0.wav"))
    b, _ = load_user_profile("en", input=str(corpus / "audio" / "s1.mp3"))
    Run(a, tmp_path)
    assert preflight(a, tmp_path).sources  # the same run: resumable
    with pytest.raises(UserError, match="holds a run"):
        preflight(b, tmp_path)
    preflight(b, tmp_path, overwrite=True)  # --overwrite: allowed
    with pytest.raises(PlanMismatch):  # and the run itself agrees
        Run(b, tmp_path)
