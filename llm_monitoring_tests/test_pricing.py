from datetime import UTC
from decimal import Decimal

from genai_prices import Usage, calc_price

from llm_monitoring.core.parsing import parse_run_log
from llm_monitoring.core.pricing import price_run
from llm_monitoring_tests.conftest import fixture_bytes


def test_cached_tokens_are_priced_at_the_cache_rate_at_the_run_time():
    record = parse_run_log(fixture_bytes("text_answer_per_response_usage.json"))
    price = price_run(record)
    expected = calc_price(
        Usage(input_tokens=1500, output_tokens=60, cache_read_tokens=512),
        "gpt-4o-mini",
        provider_id="openai",
        genai_request_timestamp=record.run_started_at,
    )
    assert price.status == "priced"
    assert price.total_cost == expected.total_price
    assert price.input_cost + price.output_cost == price.total_cost
    # cache reads are cheaper than fresh input: the same tokens uncached cost more
    uncached = calc_price(Usage(input_tokens=1500, output_tokens=60), "gpt-4o-mini", provider_id="openai")
    assert price.total_cost < uncached.total_price
    assert isinstance(price.total_cost, Decimal)


def test_dated_model_name_resolves():
    record = parse_run_log(fixture_bytes("old_pydantic_ai_no_usage.json"))
    assert price_run(record).status.startswith("no_usage")


def test_unknown_model_gives_null_cost_and_a_reason():
    price = price_run(parse_run_log(fixture_bytes("unknown_model.json")))
    assert price.total_cost is None and price.input_cost is None
    assert price.status.startswith("unknown_model")
    assert "acme-large-1" in price.status


def test_missing_usage_is_not_priced_as_zero():
    price = price_run(parse_run_log(fixture_bytes("groq_error_response.json")))
    assert price.total_cost is None
    assert price.status.startswith("no_usage")


def test_openrouter_model_behind_openai_client_is_priced_at_openrouter():
    price = price_run(parse_run_log(fixture_bytes("provider_only_in_responses.json")))
    assert price.status.startswith("priced")
    assert "openrouter" in price.status
    assert price.total_cost == Decimal(0)  # a ":free" model really is free


def test_cached_daily_rates_give_exactly_what_genai_prices_computes():
    import random
    from dataclasses import replace
    from datetime import datetime

    base = parse_run_log(fixture_bytes("text_answer_per_response_usage.json"))
    rng = random.Random(3)
    pairs = [
        ("openai", "gpt-4o-mini"),
        ("openai", "gpt-4o"),
        ("anthropic", "claude-3-5-sonnet-latest"),
        ("google-gla", "gemini-2.5-flash"),
        ("google-gla", "gemini-2.5-pro"),
        ("groq", "llama-3.3-70b-versatile"),
        ("perplexity", "sonar"),
    ]  # a per-request fee on top of the tokens
    for _ in range(60):
        provider, model = rng.choice(pairs)
        input_tokens = rng.randint(0, 300_000)
        cache_read = rng.randint(0, input_tokens // 2)
        cache_write = rng.randint(0, (input_tokens - cache_read) // 4) if provider == "anthropic" else 0
        record = replace(
            base,
            provider=provider,
            model=model,
            input_tokens=input_tokens,
            output_tokens=rng.randint(0, 9000),
            cache_read_tokens=cache_read,
            cache_write_tokens=cache_write,
            run_started_at=datetime(2025, rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 23), tzinfo=UTC),
        )
        expected = calc_price(
            Usage(
                input_tokens=record.input_tokens,
                output_tokens=record.output_tokens,
                cache_read_tokens=cache_read,
                cache_write_tokens=cache_write,
            ),
            model,
            provider_id=provider,
            genai_request_timestamp=record.run_started_at,
        )
        price = price_run(record)
        assert (price.input_cost, price.output_cost, price.total_cost) == (
            expected.input_price,
            expected.output_price,
            expected.total_price,
        ), (provider, model, input_tokens)


def test_off_peak_prices_follow_the_time_of_day():
    from dataclasses import replace
    from datetime import datetime

    base = parse_run_log(fixture_bytes("text_answer_per_response_usage.json"))
    for hour in (3, 17):  # DeepSeek's off-peak window and its standard hours (UTC)
        when = datetime(2025, 3, 10, hour, 0, tzinfo=UTC)
        record = replace(
            base,
            provider="deepseek",
            model="deepseek-chat",
            run_started_at=when,
            input_tokens=100_000,
            output_tokens=10_000,
            cache_read_tokens=0,
        )
        expected = calc_price(
            Usage(input_tokens=100_000, output_tokens=10_000), "deepseek-chat", provider_id="deepseek", genai_request_timestamp=when
        )
        assert price_run(record).total_cost == expected.total_price
