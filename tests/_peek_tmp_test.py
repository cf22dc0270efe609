import logging, collections
from tests.test_teacher_client import *  # noqa
from tests.test_teacher_client import start_teacher  # noqa

def test_peek(start_teacher, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    t, url = start_teacher(faults=Faults(rate_429=0.3, retry_after_s=0.1, seed=2))
    send(judge_requests(5), fast_cfg(url), RequestCache(str(tmp_path / "c")))
    print(collections.Counter(r.name for r in caplog.records))
    print([r.getMessage()[:300] for r in caplog.records if r.name.startswith("openai")][:3])
