"""The OCF environment."""

from __future__ import annotations

from pyvirtualdomain.ocf import OCFEnv


def test_env_probe_and_meta():
    env = OCFEnv.from_environ("monitor", {
        "OCF_RESKEY_config": "/x.xml", "OCF_RESKEY_crm_feature_set": "3.16",
        "OCF_RESKEY_CRM_meta_timeout": "20000", "OCF_RESKEY_CRM_meta_interval": "0",
        "OCF_RESKEY_CRM_meta_remote_node": "guest1", "OCF_RESOURCE_INSTANCE": "vm1"})
    assert env.is_probe and env.meta_timeout_ms == 20000 and env.instance == "vm1"
    assert env.params == {"config": "/x.xml"}
    assert env.remote_node == "guest1"
    rec = OCFEnv.from_environ("monitor", {"OCF_RESKEY_CRM_meta_interval": "10000"})
    assert not rec.is_probe
    assert not OCFEnv.from_environ("stop", {}).is_probe
    assert OCFEnv.from_environ("status", {}).is_probe


def test_env_garbage_numbers_do_not_crash():
    env = OCFEnv.from_environ("monitor", {"OCF_RESKEY_CRM_meta_timeout": "soon",
                                          "OCF_RESKEY_CRM_meta_interval": "x"})
    assert env.meta_timeout_ms is None and env.is_probe
