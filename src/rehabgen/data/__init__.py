"""Data layer: records, KIMORE reader/writer, generic import, built-in generator, splits."""

from rehabgen.data.dataset import SCORE_NAMES, SCORE_RANGES, DataError, Dataset, Quarantined, Sequence

__all__ = ["SCORE_NAMES", "SCORE_RANGES", "DataError", "Dataset", "Quarantined", "Sequence", "load_dataset"]


def load_dataset(path, **kwargs) -> Dataset:
    """Open a KIMORE-layout folder, a generic-import folder (one with labels.csv) or a Rehab-Pile
    folder (a dataset with info.json and fold<k>/, one of its folds, or a folder of such datasets)."""
    from pathlib import Path

    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file or directory")
    if (p / "labels.csv").is_file():
        from rehabgen.data.generic import load_generic

        return load_generic(p, **kwargs)
    from rehabgen.data.rehabpile import is_rehab_pile, load_rehab_pile

    if is_rehab_pile(p):
        return load_rehab_pile(p, **kwargs)
    from rehabgen.data.kimore import load_kimore

    return load_kimore(p, **kwargs)
