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


def test_the_probes_also_answer_under_the_base_path(api):
    assert api.get("/api/v1/health").json["data"]["status"] == "ok"
    assert api.get("/api/v1/ready").json == api.get("/api/ready").json
    assert api.get("/api/v1/version").json == api.get("/api/version").json


def test_every_probe_answer_carries_the_rate_limit_of_the_callers_ip(api):
    paths = ["/api/health", "/api/ready", "/api/version", "/api/site/status", "/api/v1/config/constants"]
    remaining = [int(api.get(path, ip="10.8.0.1").header("X-RateLimit-Remaining")) for path in paths]
    assert remaining == [599, 598, 597, 596, 595]
    other = api.get("/api/health", ip="10.8.0.2")
    assert other.header("X-RateLimit-Limit") == "600" and other.header("X-RateLimit-Remaining") == "599"
    assert int(other.header("X-RateLimit-Reset")) > 0
