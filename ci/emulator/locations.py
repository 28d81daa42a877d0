"""Vertex AI's locations: which ones a resource name may name, and ``locations.get``/``list``.

Vertex AI serves its regions only (cloud.google.com/vertex-ai/docs/general/locations, the
list kept in :data:`ci.limits.VERTEX_REGIONS`); a resource name in any other location
(``projects/p/locations/nowhere-1/models``, or ``global``, which the emulated collections do
not have) is refused before anything else is checked, with 400 ``INVALID_ARGUMENT`` naming
the request field that holds it, as Google's frontends word it ("Field: parent; Message:
The provided location ID is not valid."); ``locations.get`` of one is 404. The regional
hostname a real client must use (``{region}-aiplatform.googleapis.com``) is not checked:
the emulator has one address.
"""

from __future__ import annotations

import re

from ci.emulator import listing, schema
from ci.emulator.httpd import Request, field_error, not_found
from ci.limits import VERTEX_REGIONS

# The location of a /v1/ (or, for operations, /ui/) path, the one segment after /locations/.
_LOCATION = re.compile(r"^/(?:v1|ui)/projects/[^/]+/locations/(?P<location>[^/:]+)")
# Served at /ui/ as well: the published client libraries' REST transports call them there.
_PROJECT = r"/(?:v1|ui)/projects/(?P<project>[^/]+)/locations"
API = "aiplatform.projects.locations."
# What a locations.list filter may compare (google.cloud.location.Location's fields).
FIELDS = {"location_id": "locationId", "name": "name"}


def check(method_id: str, path: str) -> None:
    """400 ``INVALID_ARGUMENT`` when ``path`` names a location Vertex AI does not serve."""
    match = _LOCATION.match(path)
    if match is None or match["location"] in VERTEX_REGIONS:
        return
    if method_id == API + "get":  # the location is the resource asked for: it does not exist
        raise not_found(f"Location {path.split('/', 2)[2]}")
    raise field_error(
        _field(method_id),
        f"The provided location ID is not valid: {match['location']!r} is not a Vertex AI "
        "location.",
    )


def _field(method_id: str) -> str:
    """The request field that carries the resource name (``parent``, ``name``,
    ``endpoint``...): the method's first path parameter in the discovery document."""
    order = schema.methods().get(method_id, {}).get("parameterOrder") or ["name"]
    return order[0]


def routes():
    """(HTTP method, path regex, discovery method id, handler) for each method served."""
    return [
        ("GET", _PROJECT, API + "list", list_locations),
        ("GET", _PROJECT + r"/(?P<location>[^/:]+)", API + "get", get),
    ]


def _location(project: str, location_id: str) -> dict:
    return {"name": f"projects/{project}/locations/{location_id}", "locationId": location_id}


def get(request: Request):
    """``locations.get``: one Vertex AI region (an unknown one is refused by :func:`check`)."""
    return 200, _location(request.params["project"], request.params["location"])


def list_locations(request: Request):
    """``locations.list``: every Vertex AI region, with ``filter`` and pages."""
    found = [_location(request.params["project"], r) for r in VERTEX_REGIONS]
    return 200, listing.page("locations", found, request.query, FIELDS)
