"""Signed client ids across a CLIENT_ID_SECRET rotation."""
from __future__ import annotations

from tests.helpers import assert_error, like

OLD, NEW = "o" * 64, "n" * 64


def test_ids_signed_with_the_previous_secret_stay_valid_and_the_same_client(api_factory, db):
    with api_factory(CLIENT_ID_SECRET=OLD) as before, before.client() as c:
        cid = like(c, "rot").json()["clientId"]
    with api_factory(CLIENT_ID_SECRET=NEW, CLIENT_ID_SECRET_PREVIOUS=OLD) as during, during.client() as c:
        again = like(c, "rot", client_id=cid).json()
        assert again["changed"] is False and again["count"] == 1       # recognised as the same client
        fresh = like(c, "rot").json()["clientId"]
        assert fresh.split(".")[0] != cid.split(".")[0]               # new ids are signed with the new secret
    with api_factory(CLIENT_ID_SECRET=NEW) as after, after.client() as c:
        assert_error(like(c, "rot", client_id=cid), 400, "invalid_client_id")   # grace period over
        assert like(c, "rot", client_id=fresh).json()["changed"] is False
