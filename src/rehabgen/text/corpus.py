"""Exercise text corpus, written for rehabgen.

For each KIMORE exercise: clinical descriptions and paraphrases (a training set and held-out
paraphrases that no model ever trains on), plus phrases for how it is performed, each tied to
something measurable: the clinical score (quality) or the recording's duration relative to
the exercise's typical duration (speed). `describe` builds a sentence for any labelled
sequence, so (sequence, text) pairs exist for every dataset with exercise + score labels.
"""

from __future__ import annotations

import numpy as np

DESCRIPTIONS: dict[str, dict[str, list[str]]] = {
    "Es1": {
        "train": [
            "lifting of the arms",
            "raise both arms forward and up above the head, then lower them",
            "arm elevation: lift the straight arms in front of the body until they point to the ceiling",
            "standing still, bring both arms up over the head and back down to the sides",
            "shoulder flexion with both arms extended, up to the overhead position",
            "the patient lifts the arms from the hips to above the head several times",
            "slowly raise the arms overhead keeping the elbows straight and lower them again",
            "bilateral arm raise in the sagittal plane, repeated",
        ],
        "test": [
            "raise both arms slowly above the head, keeping the trunk still",
            "lift your arms up high over your head and bring them down",
            "repeated overhead reaching with both arms",
        ],
    },
    "Es2": {
        "train": [
            "lateral tilt of the trunk with the arms in extension",
            "with the arms raised overhead, bend the upper body to the left and then to the right",
            "side bending of the trunk while keeping the arms stretched above the head",
            "arms up, lean sideways to one side and then the other",
            "lateral flexion of the spine with extended arms held overhead",
            "the patient tilts the torso from side to side with the arms up",
            "keeping the hands above the head, incline the trunk laterally in both directions",
            "alternate left and right trunk side bends with arms extended upwards",
        ],
        "test": [
            "stretch the arms up and bend the trunk to each side",
            "sideways lean of the upper body with arms straight above the head",
            "arms overhead, tilt the body left then right",
        ],
    },
    "Es3": {
        "train": [
            "trunk rotation",
            "with the arms held in front of the chest, turn the trunk to the left and to the right",
            "rotate the upper body around the vertical axis while the pelvis stays facing forward",
            "twist the torso from one side to the other with the arms forward",
            "axial rotation of the spine, alternating directions",
            "the patient turns the shoulders left and right keeping the feet still",
            "holding the arms out in front, rotate the chest to each side",
            "alternate trunk twists to the right and to the left",
        ],
        "test": [
            "turn the upper body side to side with the arms in front",
            "twisting of the trunk in both directions while standing",
            "rotate the shoulders and chest to the left, then to the right",
        ],
    },
    "Es4": {
        "train": [
            "pelvis rotations on the transverse plane",
            "with the hands on the hips, move the pelvis in circles",
            "hip circles: rotate the pelvis around while the shoulders stay still",
            "circular movements of the hips in the horizontal plane, hands on the waist",
            "the patient draws circles with the pelvis, in one direction and then the other",
            "hands on hips, make slow round movements of the pelvis",
            "rotation of the pelvis forward, sideways and backward in a circle",
            "pelvic circling while standing with the feet still",
        ],
        "test": [
            "put your hands on your hips and circle the hips",
            "round pelvis movements in the transverse plane",
            "rotate the hips in circles keeping the upper body steady",
        ],
    },
    "Es5": {
        "train": [
            "squatting",
            "bend the knees and lower the hips into a squat, then stand up again",
            "squat down with the arms forward for balance and return to standing",
            "knee and hip flexion to lower the body, then extension to stand",
            "the patient performs squats, sitting back as if onto a chair",
            "lower the pelvis by bending the legs, keeping the heels on the floor, and rise",
            "repeated partial squats with the arms reaching forward",
            "go down into a squat and come back up",
        ],
        "test": [
            "crouch down by bending the knees and stand back up",
            "do a few squats with the arms stretched forward",
            "lower the body by bending hips and knees, then rise to standing",
        ],
    },
}

# quality phrases by score band (fraction of the score range); a phrase states a direction.
# Each phrase is one or two short clauses: the quality reader (text/reader.py) reads clauses.
QUALITY: dict[str, dict[str, list[str]]] = {
    "high": {
        "train": ["performed correctly", "with full range of motion", "with good control", "smoothly and fully",
                  "with excellent form", "reaching the full amplitude", "well executed", "without compensation",
                  "with correct posture throughout", "accurately and with ease", "confidently, with a large movement"],
        "test": ["done well, with complete movement", "with perfect technique",
                 "executed cleanly through the whole range"],
    },
    "mid": {
        "train": ["with some difficulty", "with a slightly reduced range", "with moderate control",
                  "reasonably well but not fully", "with minor compensation", "with fair quality",
                  "partially reaching the target", "with a somewhat hesitant movement"],
        "test": ["performed fairly, with a somewhat limited range", "adequately, with small errors",
                 "not quite fully, with average control"],
    },
    "low": {
        "train": ["with a limited range of motion", "with trunk compensation", "poorly, with little control",
                  "with difficulty and hesitation", "badly", "with a very small movement",
                  "incorrectly, with a stiff trunk", "with great effort and poor balance",
                  "with jerky, incomplete movements", "far from the target range"],
        "test": ["done poorly, with a small and uncertain movement", "with a severely restricted range and bad posture",
                 "weakly and with many mistakes"],
    },
}
SPEED: dict[str, dict[str, list[str]]] = {
    "slow": {"train": ["slowly", "at a slow pace"], "test": ["very slowly"]},
    "normal": {"train": ["", "at a normal pace"], "test": ["at a regular pace"]},
    "fast": {"train": ["quickly", "at a brisk pace"], "test": ["fast"]},
}


def quality_band(unit_score: float) -> str | None:
    """Score in [0, 1] of its range -> band (None if unknown)."""
    if unit_score is None or not np.isfinite(unit_score):
        return None
    return "high" if unit_score >= 0.75 else "mid" if unit_score >= 0.5 else "low"


def speed_band(duration_rel: float | None) -> str:
    """Duration / typical duration of the exercise -> band."""
    if duration_rel is None or not np.isfinite(duration_rel):
        return "normal"
    return "slow" if duration_rel > 1.2 else "fast" if duration_rel < 0.85 else "normal"


def describe(exercise: str, unit_score: float | None, duration_rel: float | None, rng: np.random.Generator,
             split: str = "train", p_quality: float = 0.7, p_speed: float = 0.4) -> str:
    """One description of a performance: exercise text, sometimes how well, sometimes how fast."""
    if exercise not in DESCRIPTIONS:
        raise KeyError(f"no descriptions for exercise {exercise!r}; the corpus covers {list(DESCRIPTIONS)}")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    parts = [str(rng.choice(DESCRIPTIONS[exercise][split]))]
    sp = SPEED[speed_band(duration_rel)][split]
    if rng.random() < p_speed:
        phrase = str(rng.choice(sp))
        if phrase:
            parts.append(phrase)
    band = quality_band(unit_score)
    if band is not None and rng.random() < p_quality:
        parts.append(str(rng.choice(QUALITY[band][split])))
    return ", ".join(parts)


def quality_prompt(exercise: str, band: str, split: str = "test", k: int = 0) -> str:
    """A fixed prompt stating exercise and quality (for controlled checks)."""
    return quality_prompts(exercise, band, split)[k % (len(DESCRIPTIONS[exercise][split]) * len(QUALITY[band][split]))]


def quality_prompts(exercise: str, band: str | None, split: str = "test") -> list[str]:
    """Every description of `exercise` joined with every quality phrase of `band` (None: no
    quality phrase), description-major."""
    ds = DESCRIPTIONS[exercise][split]
    return list(ds) if band is None else [f"{d}, {q}" for d in ds for q in QUALITY[band][split]]
