"""The llm stage (``stage.LlmStage``): DeSTA2 descriptions (``descriptions``), SALM-style QA (``qa``) and
template label tasks (``label_tasks``) from utterance rows, with the seed description in ``seed``."""
