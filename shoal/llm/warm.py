"""What the actors' forkserver imports (``preload`` in the settings) to start them warm.

Importing this does, once in the forkserver, what every actor's first model call would
otherwise do itself (about 0.25 s each, on the critical path of a cold task: planner,
executor and evaluator each pay it in turn): import litellm and the modules it imports
lazily on a call (the OpenAI SDK's resources, httpcore, its files helpers), finish the
response models pydantic builds on first use, and build the TLS context (the CA bundle
read and parsed), which litellm caches per configuration and a forked actor inherits.
Nothing here connects anywhere or starts a thread (DESIGN.md §1: the forkserver must
stay safe to fork).
"""

from __future__ import annotations

from shoal.llm.env import set_litellm_env

set_litellm_env()  # before litellm is imported (the orchestrator has set it already)

import httpcore  # noqa: E402, F401
import litellm.llms.openai.openai  # noqa: E402
import litellm.proxy.openai_files_endpoints.common_utils  # noqa: E402, F401
import openai.resources  # noqa: E402, F401
from litellm.llms.custom_httpx.http_handler import get_ssl_configuration  # noqa: E402
from litellm.types import router, services, utils  # noqa: E402
from openai.types.chat import chat_completion, chat_completion_message  # noqa: E402

_FIRST_USE = (
    utils.Message,
    utils.Choices,
    utils.ModelResponse,
    utils.Usage,
    utils.ChatCompletionMessageToolCall,
    utils.Function,
    chat_completion_message.ChatCompletionMessage,
    chat_completion.Choice,
    chat_completion.ChatCompletion,
    services.ServiceLoggerPayload,
    router.LiteLLM_Params,
)

for _model in _FIRST_USE:
    _model.model_rebuild()
get_ssl_configuration()
