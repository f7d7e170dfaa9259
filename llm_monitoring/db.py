"""Public facade of the storage package (llm_monitoring/storage/)."""

from llm_monitoring.database_url import hide_secrets, mask_url, mask_whole_url, normalize_url, url_problem  # noqa: F401
from llm_monitoring.storage.bulk import *  # noqa: F401,F403
from llm_monitoring.storage.daily import *  # noqa: F401,F403
from llm_monitoring.storage.engine import *  # noqa: F401,F403
from llm_monitoring.storage.errors import *  # noqa: F401,F403
from llm_monitoring.storage.feedback import *  # noqa: F401,F403
from llm_monitoring.storage.history import *  # noqa: F401,F403
from llm_monitoring.storage.ledger import *  # noqa: F401,F403
from llm_monitoring.storage.migrate import *  # noqa: F401,F403
from llm_monitoring.storage.review import *  # noqa: F401,F403
from llm_monitoring.storage.runs import *  # noqa: F401,F403
from llm_monitoring.storage.schema import *  # noqa: F401,F403
from llm_monitoring.storage.windows import *  # noqa: F401,F403
