"""GET /metrics: Prometheus text that parses, counters that move, the token that guards it."""

from __future__ import annotations

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from foreman.server import Daemon
from tests.conftest import OllamaFactory, StartForeman

HELLO = [{"role": "user", "content": "hello there"}]


async def scrape(http: aiohttp.ClientSession, url: str) -> dict[str, float]:
    async with http.get(url + "/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


async def test_counters_move_as_jobs_run_and_models_swap(
    foreman: Daemon, http: aiohttp.ClientSession, ollama_client: OllamaFactory
) -> None:
    before = await scrape(http, foreman.url)
    assert before["foreman_target_up{}"] == 1.0
    client = ollama_client(foreman.url)
    await client.generate(model="llama3.2", prompt="one")
    await client.generate(model="qwen3", prompt="two", think=False)
    await client.generate(model="qwen3", prompt="three", think=False)
    after = await scrape(http, foreman.url)
    assert (
        after["foreman_job_transitions_total{state=done}"] - before.get("foreman_job_transitions_total{state=done}", 0)
        == 3
    )
    assert after["foreman_model_swaps_total{}"] - before["foreman_model_swaps_total{}"] == 2
    assert after["foreman_job_duration_seconds_count{endpoint=/api/generate,state=done}"] == 3
    assert after["foreman_job_queue_wait_seconds_count{}"] >= 3
    assert after["foreman_jobs{state=queued}"] == 0
    assert any(k.startswith("foreman_http_request_duration_seconds_count{handler=GenerationHandler") for k in after)


async def test_metrics_need_the_token(start_foreman: StartForeman, http: aiohttp.ClientSession) -> None:
    foreman = await start_foreman(token="s3cret")
    async with http.get(foreman.url + "/metrics") as resp:
        assert resp.status == 401
    async with http.get(foreman.url + "/metrics", headers={"Authorization": "Bearer s3cret"}) as resp:
        assert resp.status == 200
