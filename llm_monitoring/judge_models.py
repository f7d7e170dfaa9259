"""The model side of LLM judges: the pydantic-ai model a judge calls (keys from the environment only),
the verdict request, and which failures are retried, after how long, and which stop a judge."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from llm_monitoring.core.judges import JUDGE_INSTRUCTIONS, Judge, Verdict
from llm_monitoring.database_url import mask_url

if TYPE_CHECKING:
    from pydantic_ai.models import Model


class JudgeSetupError(RuntimeError):
    """A judge cannot call its model (no key, unknown model); the message names the judge, never a key."""


def build_model(judge: Judge) -> Model:
    """The pydantic-ai model a judge calls. A judge with base_url talks to that OpenAI-compatible server
    (chat completions) with the key in its api_key_env, or a placeholder: the OpenAI key is never sent
    to another server."""
    # Imported here: pydantic-ai takes seconds to import, and only a judge run needs it.
    from pydantic_ai.exceptions import UserError
    from pydantic_ai.models import infer_model

    try:
        if judge.base_url:
            from pydantic_ai.models.openai import OpenAIChatModel
            from pydantic_ai.providers.openai import OpenAIProvider

            key = os.environ.get(judge.api_key_env, "") if judge.api_key_env else "not-needed"
            if not key:
                raise JudgeSetupError(f"judge {judge.name!r}: {judge.api_key_env} (its api_key_env) is not set")
            return OpenAIChatModel(judge.model_name, provider=OpenAIProvider(base_url=judge.base_url, api_key=key))
        return infer_model(judge.model)
    except UserError as error:
        raise JudgeSetupError(f"judge {judge.name!r} ({judge.model}): {' '.join(str(error).split())}") from None


VERDICT_TOOL = "final_result"  # the tool the model fills in with its verdict (pydantic-ai's name for output tools)


class InvalidVerdict(ValueError):
    """The model answered, but not with a verdict the schema accepts."""


@dataclass(frozen=True)
class VerdictRequests:
    """Asks a model for verdicts through pydantic-ai's direct API: one request per run, the verdict as
    structured output (a tool the model must call, with Verdict's schema).

    An Agent would do the same in one request, at twice the CPU per call (its run graph): with
    hundreds of calls in flight the client's CPU, not the model, would set the pace.
    """

    model: Model

    async def ask(self, prompt: str) -> tuple[Verdict, Any]:
        from pydantic_ai.direct import model_request
        from pydantic_ai.messages import ModelRequest, ToolCallPart, UserPromptPart

        message = ModelRequest(parts=[UserPromptPart(prompt)], instructions=JUDGE_INSTRUCTIONS)
        # The SDKs' own retries are off: judge_run retries, honouring Retry-After, and counts them.
        response = await model_request(self.model, [message], model_settings={"max_retries": 0}, model_request_parameters=_parameters())
        calls = [part for part in response.parts if isinstance(part, ToolCallPart) and part.tool_name == VERDICT_TOOL]
        if not calls:
            raise InvalidVerdict("the model answered without calling the verdict tool")
        try:
            return Verdict.model_validate(calls[0].args_as_dict()), response.usage
        except (ValidationError, ValueError) as error:
            raise InvalidVerdict(f"the verdict does not fit its schema: {' '.join(str(error).split())[:200]}") from None


@lru_cache(maxsize=1)
def _parameters() -> Any:
    from pydantic_ai.models import ModelRequestParameters
    from pydantic_ai.tools import ToolDefinition

    tool = ToolDefinition(
        name=VERDICT_TOOL,
        description="Give your verdict on the run.",
        parameters_json_schema=Verdict.model_json_schema(),
        kind="output",
    )
    return ModelRequestParameters(output_tools=[tool], output_mode="tool", allow_text_output=False)


ModelFactory = Callable[[Judge], "Model"]


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of a call refused with 429 or 5xx, or cut off: the server's Retry-After, else exponential backoff."""

    max_attempts: int = 6
    first_delay: float = 1.0
    max_delay: float = 60.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        # Jitter spreads the retries of calls refused together, so they do not all come back at once.
        return min(self.first_delay * 2 ** (attempt - 1), self.max_delay) * random.uniform(0.5, 1.0)


def retryable(error: Exception) -> bool:
    from pydantic_ai.exceptions import (
        ModelConnectionError,
        ModelHTTPError,
        ModelRateLimitError,
        ModelServerError,
        ModelUnavailableError,
    )

    if isinstance(error, ModelRateLimitError | ModelUnavailableError | ModelServerError | ModelConnectionError):
        return True
    return isinstance(error, ModelHTTPError) and (error.status_code == 429 or error.status_code >= 500)


def retry_after(error: Exception) -> float | None:
    """The wait the server asked for: pydantic-ai reads retry-after-ms and whole-second Retry-After; a
    fractional Retry-After (some proxies send "0.5") is read here."""
    asked = getattr(error, "retry_after", None)
    if asked is not None:
        return asked
    text = (getattr(error, "headers", None) or {}).get("retry-after", "")
    try:
        return max(float(text), 0.0)
    except ValueError:
        return None


def fatal(error: Exception) -> bool:
    """Errors every later call would get too: the judge stops rather than send them all."""
    from pydantic_ai.exceptions import ModelAuthenticationError, ModelHTTPError, ModelNotFoundError, ModelQuotaExceededError, UserError

    if isinstance(error, ModelAuthenticationError | ModelNotFoundError | ModelQuotaExceededError | UserError):
        return True
    # A key refused, no credit, no such model or route: whatever adapter raised it uncategorized.
    return isinstance(error, ModelHTTPError) and error.status_code in (401, 402, 403, 404)


def describe(error: Exception) -> str:
    status = getattr(error, "status_code", None)
    text = " ".join(str(getattr(error, "message", None) or error).split())[:300]
    return mask_url(f"{type(error).__name__}{f' (HTTP {status})' if status else ''}: {text}")
