from __future__ import annotations


def test_health_reports_ok_and_db(api):
    response = api.get("/api/health")
    assert response.status == 200
    body = response.json["data"]
    assert body["status"] == "ok"
    assert body["db"] == "ok"
    assert body["version"]


def test_ready_version_site_status_and_constants_need_no_token(api):
    assert api.get("/api/ready").json == {"data": {"ready": True}}
    assert api.get("/api/version").json["data"]["version"]
    assert api.get("/api/site/status").json["data"] == {"maintenance": False, "banner": None}
    constants = api.get("/api/v1/config/constants").json["data"]
    assert "owner" in constants["roles"]
    assert "runs:start" in constants["scopes"]
    assert constants["page_size_max"] == 200


def test_unknown_path_is_404(api):
    assert api.get("/api/nope").status == 404
