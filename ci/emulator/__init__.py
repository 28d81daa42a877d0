"""A local, wire-level Vertex AI emulator (plus the gcp-storage-emulator Cloud Storage).

Clients reach it exactly as they reach Vertex AI: google-api-python-client with the static
``aiplatform`` v1 discovery document, or the official SDK (google-cloud-aiplatform, REST
transport), with ``api_endpoint`` set to the emulator's URL (docs/emulator.md).
Jobs run as real local processes; predict serves the real SavedModel. Start it with
``python -m ci emulator`` or :func:`ci.emulator.process.start`.
"""
