"""The Google clients, built the same way for Vertex AI and for the local emulators.

Only the endpoint and the credentials differ: Application Default Credentials against
Google Cloud, anonymous credentials against the emulators. Nothing else branches.
"""

from __future__ import annotations

import os

# How often google-api-python-client retries 429 and 5xx answers (exponential backoff
# with jitter, its own implementation: ``HttpRequest.execute(num_retries=...)``).
NUM_RETRIES = 5


def vertex_endpoint(region: str, api_endpoint: str | None = None) -> str:
    """The regional Vertex AI endpoint, or ``api_endpoint`` when one is given."""
    return api_endpoint or f"https://{region}-aiplatform.googleapis.com"


def vertex(region: str, api_endpoint: str | None = None, anonymous: bool = False):
    """An ``aiplatform`` v1 client from the static discovery document shipped with the library."""
    from google.auth.credentials import AnonymousCredentials
    from googleapiclient import discovery

    credentials = AnonymousCredentials() if anonymous else None
    return discovery.build(
        "aiplatform",
        "v1",
        static_discovery=True,
        cache_discovery=False,
        credentials=credentials,
        client_options={"api_endpoint": vertex_endpoint(region, api_endpoint)},
    )


def storage(project: str | None = None):
    """A google-cloud-storage client; honours ``STORAGE_EMULATOR_HOST`` like the library does."""
    from google.cloud import storage as gcs

    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return gcs.Client(project=project or "local", credentials=AnonymousCredentials())
    return gcs.Client(project=project)


def call(request):
    """Execute a discovery request, retrying 429 and 5xx with the library's backoff."""
    return request.execute(num_retries=NUM_RETRIES)
