-- wrk script for the benchmark suite (bench/suite.py reads what done() prints).
--
-- Every scenario: done() prints one line "BENCH_JSON {...}" with the counts
-- and latency percentiles (microseconds) of the run.
-- With BENCH_CREATE set: each request POSTs the new-user form with a unique
-- email (run token, thread number, counter), the CSRF token and session
-- cookie given in BENCH_CSRF / BENCH_COOKIE, and 303 answers are counted as
-- acknowledged creates.

-- With BENCH_COOKIE set, every request sends it: the benchmark is signed in.

local threads = {}
local session_cookie = os.getenv("BENCH_COOKIE")
if session_cookie then
  wrk.headers["Cookie"] = session_cookie
end
local next_thread_id = 0

function setup(thread)
  next_thread_id = next_thread_id + 1
  thread:set("thread_id", next_thread_id)
  table.insert(threads, thread)
end

if os.getenv("BENCH_CREATE") then
  local run = os.getenv("BENCH_RUN")
  local csrf = os.getenv("BENCH_CSRF")
  local cookie = os.getenv("BENCH_COOKIE")
  counter = 0
  created = 0

  function request()
    counter = counter + 1
    local body = string.format(
      "name=Bench+User+%d&email=bench-%s-%d-%d%%40example.com&csrf_token=%s",
      counter, run, thread_id, counter, csrf)
    return wrk.format("POST", nil, {
      ["Content-Type"] = "application/x-www-form-urlencoded",
      ["Cookie"] = cookie,
    }, body)
  end

  function response(status, headers, body)
    if status == 303 then
      created = created + 1
    end
  end
end

function done(summary, latency, requests)
  local created = 0
  for _, thread in ipairs(threads) do
    created = created + (thread:get("created") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "max": %d, "mean": %.1f}, ' ..
    '"created": %d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean, created))
end
