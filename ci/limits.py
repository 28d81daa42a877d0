"""What Vertex AI accepts that its discovery document does not say: locations, and how many
accelerators of each type a replica may have. Checked when settings are read, so a typo
fails before anything is built, uploaded or submitted."""

from __future__ import annotations

import difflib

from ci.errors import UsageError

# Vertex AI's locations (cloud.google.com/vertex-ai/docs/general/locations). A region not
# listed is accepted (new regions open), unless its name is a near miss of a listed one's
# (``us-centrall1``): that is a typo, which would otherwise surface as a failure to connect
# after files were uploaded.
VERTEX_REGIONS = (
    "us-central1",
    "us-east1",
    "us-east4",
    "us-east5",
    "us-east7",
    "us-south1",
    "us-west1",
    "us-west2",
    "us-west3",
    "us-west4",
    "us-west8",
    "northamerica-northeast1",
    "northamerica-northeast2",
    "northamerica-south1",
    "southamerica-east1",
    "southamerica-west1",
    "europe-central2",
    "europe-north1",
    "europe-north2",
    "europe-southwest1",
    "europe-west1",
    "europe-west2",
    "europe-west3",
    "europe-west4",
    "europe-west6",
    "europe-west8",
    "europe-west9",
    "europe-west10",
    "europe-west12",
    "me-central1",
    "me-central2",
    "me-west1",
    "africa-south1",
    "asia-east1",
    "asia-east2",
    "asia-northeast1",
    "asia-northeast2",
    "asia-northeast3",
    "asia-south1",
    "asia-south2",
    "asia-southeast1",
    "asia-southeast2",
    "australia-southeast1",
    "australia-southeast2",
)
# How many accelerators of each type one replica may have on Vertex AI custom training
# (the machine types' GPU and TPU configurations, cloud.google.com/vertex-ai/docs/training/
# configure-compute#gpu-compatibility-table). Types not listed are not checked here.
ACCELERATOR_COUNTS = {
    "NVIDIA_TESLA_K80": (1, 2, 4, 8),
    "NVIDIA_TESLA_P4": (1, 2, 4),
    "NVIDIA_TESLA_T4": (1, 2, 4),
    "NVIDIA_TESLA_P100": (1, 2, 4),
    "NVIDIA_TESLA_V100": (1, 2, 4, 8),
    "NVIDIA_TESLA_A100": (1, 2, 4, 8, 16),
    "NVIDIA_A100_80GB": (1, 2, 4, 8),
    "NVIDIA_L4": (1, 2, 4, 8),
    "NVIDIA_H100_80GB": (1, 2, 4, 8),
    "NVIDIA_H100_MEGA_80GB": (8,),
    "NVIDIA_H200_141GB": (8,),
    "NVIDIA_B200": (8,),
    "NVIDIA_GB200": (4,),
    "NVIDIA_RTX_PRO_6000": (1, 2, 4, 8),
    "TPU_V2": (8,),
    "TPU_V3": (8,),
    "TPU_V4_POD": (4,),
    "TPU_V5_LITEPOD": (1, 4, 8),
}


def check_region(region: str) -> None:
    """A near miss of a Vertex AI location's name is a typo (see :data:`VERTEX_REGIONS`)."""
    if region in VERTEX_REGIONS:
        return
    stem = region.rstrip("0123456789")
    stems = {r.rstrip("0123456789") for r in VERTEX_REGIONS}
    if stem in stems:  # a new number in a known area: new regions open that way
        return
    close = difflib.get_close_matches(stem, stems, n=1, cutoff=0.9)
    if close:
        like = [r for r in VERTEX_REGIONS if r.startswith(close[0])]
        raise UsageError(
            f"setting 'region': bad value {region!r} (not a Vertex AI location; did you mean "
            f"{' or '.join(like[:3])}?)"
        )


def check_accelerators(kind: str | None, count: int | None) -> None:
    """A type needs a count and a count a type; the count must be one Vertex AI offers."""
    if count and not kind:
        raise UsageError(
            f"setting 'accelerator_count' is {count} but 'accelerator_type' is unset "
            "(--accelerator-type, e.g. NVIDIA_TESLA_T4)"
        )
    if not kind:
        return
    if not count:
        raise UsageError(
            f"setting 'accelerator_type' is {kind} but 'accelerator_count' is unset "
            "(--accelerator-count)"
        )
    allowed = ACCELERATOR_COUNTS.get(kind)
    if allowed and count not in allowed:
        raise UsageError(
            f"setting 'accelerator_count': bad value {count} for {kind} "
            f"(Vertex AI attaches {', '.join(map(str, allowed))} per replica)"
        )
