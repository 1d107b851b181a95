"""Super-NaturalInstructions: one task file ``{"Definition": [...], "Instances": [{"id", "input", "output": [...]}]}``
-> one record per instance."""
from __future__ import annotations

from pipeline.recipes.text.base import Reject, TextInstruction, text_field


def parse(task: dict, source: str) -> tuple[list[TextInstruction], list[Reject]]:
    out: list[TextInstruction] = []
    rejects: list[Reject] = []
    definition = task.get("Definition")
    if isinstance(definition, str):
        definition = [definition]
    if not isinstance(definition, list) or not all(isinstance(d, str) for d in definition):
        raise ValueError("Super-NaturalInstructions task: 'Definition' must be a list of strings")
    instruction = " ".join(d.strip() for d in definition if d.strip())
    instances = task.get("Instances")
    if not isinstance(instances, list):
        raise ValueError("Super-NaturalInstructions task: 'Instances' must be a list")
    task_meta = {"format": "sni"}
    for key in ("Categories", "Domains", "Input_language", "Output_language", "Instruction_language", "Source"):
        if key in task:
            task_meta[key.lower()] = task[key]
    task_meta["n_positive_examples"] = len(task.get("Positive Examples") or [])
    seen: set[str] = set()
    for idx, inst in enumerate(instances):
        rid = f"{source}:{idx}"
        if not isinstance(inst, dict):
            rejects.append(Reject(rid, "not_an_object", f"instance is {type(inst).__name__}"))
            continue
        if inst.get("id") is not None:
            rid = str(inst["id"])  # SNI ids are already globally unique ("task1557-...")
        if rid in seen:
            rejects.append(Reject(rid, "duplicate_id", "id already used by an earlier instance"))
            continue
        if not instruction:
            rejects.append(Reject(rid, "missing_instruction", "task Definition is empty"))
            continue
        inp = text_field(inst.get("input"))
        if inp is None:
            rejects.append(Reject(rid, "bad_type", "input must be a string"))
            continue
        if not inp:
            rejects.append(Reject(rid, "missing_input", "instance input is missing or empty"))
            continue
        outputs = inst.get("output")
        if isinstance(outputs, str):
            outputs = [outputs]
        if not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs):
            rejects.append(Reject(rid, "bad_type", "output must be a list of strings"))
            continue
        outputs = [o.strip() for o in outputs if o.strip()]
        if not outputs:
            rejects.append(Reject(rid, "missing_output", "instance has no non-empty output"))
            continue
        seen.add(rid)
        out.append(TextInstruction(id=rid, source=source, instruction=instruction, input=inp, output=outputs[0],
                                   meta={**task_meta, "outputs": outputs}))
    return out, rejects
