"""finetune.py's training: TRL LoRA, an open model in process, answer NLL, the job record."""
