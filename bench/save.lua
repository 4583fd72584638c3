-- wrk script for the answer-save benchmark (bench/bench_screening.py): -t N -c N, one connection per
-- thread. MHP_WRK_MODE=save: thread i takes line i of $MHP_WRK_PLAN (a minted mhp_student cookie of an
-- entered code), opens the PHQ-9 page once (session cookie + CSRF token), then autosaves answers
-- (POST /s/answer, items 1-8 in turn, random values 0-3). MHP_WRK_MODE=insert: the baseline, POST
-- /api/bench/insert (a 20-item row). Any answer that is not 200 with "saved":true counts as an error.
-- done() writes requests, latency percentiles and error counts as JSON to $MHP_WRK_OUT.

local threads = {}
local nthreads = 0

function setup(thread)
  thread:set("tid", nthreads)
  nthreads = nthreads + 1
  table.insert(threads, thread)
end

function init(args)
  mode = os.getenv("MHP_WRK_MODE")
  errors, oks, n = 0, 0, 0
  math.randomseed(1000 + tid)
  if mode == "save" then
    local i = 0
    for line in io.lines(os.getenv("MHP_WRK_PLAN")) do
      if i == tid then cookie = line end
      i = i + 1
    end
    step = "page"
  end
end

local function insert_body()
  local items = {}
  for k = 1, 20 do items[k] = tostring(math.random(0, 3)) end
  return '{"student_id":' .. math.random(1, 100000) .. ',"instrument":"phq9","items":[' .. table.concat(items, ",") .. ']}'
end

request = function()
  if mode == "insert" then
    return wrk.format("POST", "/api/bench/insert", {["Content-Type"] = "application/json"}, insert_body())
  end
  if cookie == nil then  -- wrk's script check on thread 0 before setup: harmless
    return wrk.format("GET", "/s/", {})
  end
  if step == "page" then
    return wrk.format("GET", "/s/p/phq9", {["Cookie"] = "mhp_student=" .. cookie})
  end
  n = n + 1
  local body = '{"instrument":"phq9","item":' .. ((n % 8) + 1) .. ',"value":' .. math.random(0, 3) .. ',"ms":3000}'
  return wrk.format("POST", "/s/answer", {["Content-Type"] = "application/json", ["X-CSRFToken"] = token,
                    ["Cookie"] = "mhp_student=" .. cookie .. "; mhp_session=" .. session}, body)
end

response = function(status, headers, body)
  if mode == "insert" then
    if status == 200 then oks = oks + 1 else errors = errors + 1 end
    return
  end
  if cookie == nil then return end
  if step == "page" then
    session = string.match(headers["Set-Cookie"] or "", "^mhp_session=([^;]+)")
    token = string.match(body, 'name="csrf%-token" content="([^"]+)"')
    if status == 200 and session ~= nil and token ~= nil then step = "save" else errors = errors + 1 end
    return
  end
  if status == 200 and string.find(body, '"saved":true', 1, true) then oks = oks + 1 else errors = errors + 1 end
end

done = function(summary, latency, requests)
  local e, o = 0, 0
  for _, t in ipairs(threads) do
    e = e + (t:get("errors") or 0)
    o = o + (t:get("oks") or 0)
  end
  local s = summary.errors
  local f = assert(io.open(os.getenv("MHP_WRK_OUT"), "w"))
  f:write(string.format('{"requests":%d,"duration_us":%d,"ok":%d,"errors":%d,"socket_errors":%d,' ..
    '"p50_us":%d,"p99_us":%d}', summary.requests, summary.duration, o, e,
    s.connect + s.read + s.write + s.timeout, latency:percentile(50), latency:percentile(99)))
  f:close()
end
