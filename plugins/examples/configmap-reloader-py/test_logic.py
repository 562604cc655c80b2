import logic


def deployment(annotations=None, **spec):
    return {"metadata": {"name": "web", "annotations": annotations or {}},
            "spec": {"template": {"spec": spec}}}


def test_finds_configmaps_in_volumes_projections_and_env():
    d = deployment(
        volumes=[{"name": "a", "configMap": {"name": "cfg"}},
                 {"name": "b", "projected": {"sources": [{"configMap": {"name": "proj"}}]}},
                 {"name": "c", "secret": {"secretName": "s"}}],
        containers=[{"name": "x", "envFrom": [{"configMapRef": {"name": "env"}}],
                     "env": [{"name": "K", "valueFrom": {"configMapKeyRef": {"name": "key", "key": "k"}}}]}],
    )
    assert logic.referenced_configmaps(d) == ["cfg", "env", "key", "proj"]
    assert logic.referenced_configmaps({"metadata": {}}) == []


def test_hash_follows_data_not_metadata():
    a = {"metadata": {"resourceVersion": "1"}, "data": {"k": "v"}}
    b = {"metadata": {"resourceVersion": "2"}, "data": {"k": "v"}}
    c = {"metadata": {"resourceVersion": "3"}, "data": {"k": "w"}}
    assert logic.configmaps_hash({"x": a}) == logic.configmaps_hash({"x": b})
    assert logic.configmaps_hash({"x": a}) != logic.configmaps_hash({"x": c})
    assert logic.configmaps_hash({"x": a}) != logic.configmaps_hash({"x": None})


def test_first_sight_records_then_a_change_restarts():
    first = logic.plan(deployment(), "h1", "2026-01-01T00:00:00Z")
    assert first == {"metadata": {"annotations": {logic.HASH_ANNOTATION: "h1"}}}
    assert logic.plan(deployment({logic.HASH_ANNOTATION: "h1"}), "h1", "t") is None
    changed = logic.plan(deployment({logic.HASH_ANNOTATION: "h1"}), "h2", "t")
    assert changed["metadata"]["annotations"][logic.HASH_ANNOTATION] == "h2"
    assert changed["spec"]["template"]["metadata"]["annotations"][logic.RESTARTED_AT] == "t"
