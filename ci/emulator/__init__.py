"""A local, wire-level Vertex AI emulator (plus the gcp-storage-emulator Cloud Storage).

Clients reach it exactly as they reach Vertex AI: google-api-python-client with the static
``aiplatform`` v1 discovery document and ``api_endpoint`` set to the emulator's URL.
Jobs run as real local processes; predict serves the real SavedModel. Start it with
``python -m ci emulator`` or :func:`ci.emulator.process.start`.
"""
