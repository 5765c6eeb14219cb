"""finetune.py --evaluate: policies under evaluation, scores, statistics, report and picture."""
