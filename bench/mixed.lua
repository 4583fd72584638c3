-- wrk script for bench/bench_mixed.py: each wrk thread has exactly one connection (-t N -c N) and
-- plays whole students, one after another, from its own slice of a plan file written by the bench:
--   GET /s/ (CSRF meta + session cookie) -> POST /s/ (code) -> per instrument: GET /s/p/<i>,
--   POST /s/answer per item (autosave JSON), POST /s/p/<i> (the whole form) -> GET /s/done.
-- Plan line: code \t inst:item=value=ms[!],item=value=ms;inst:... [\t r]
-- ("!" marks the critical answer; "r": earlier pages were submitted in set-up, the login resumes)
-- The student cookie (mhp_student) is taken from the login answer (its only Set-Cookie; wrk hands
-- response() only the last of repeated headers): the login starts a new server-side sitting, so a
-- cookie minted before it would be refused. The login must answer 303 to the first page and set that
-- cookie. Every answer is checked (status, Location, JSON body);
-- a wrong one counts an error and the student is abandoned. done() writes JSON counts to
-- $MHP_WRK_OUT.

local threads = {}
local nthreads = 0

function setup(thread)
  thread:set("tid", nthreads)
  nthreads = nthreads + 1
  table.insert(threads, thread)
end

local function split(s, sep)
  local out = {}
  for piece in string.gmatch(s, "([^" .. sep .. "]+)") do
    table.insert(out, piece)
  end
  return out
end

local function parse_plan(line)
  local f = split(line, "\t")
  local st = {code = f[1], cookie = nil, pages = {}, resumed = f[3] == "r"}
  for _, page in ipairs(split(f[2], ";")) do
    local inst, rest = string.match(page, "^([^:]+):(.*)$")
    local items = {}
    for _, a in ipairs(split(rest, ",")) do
      local n, v, ms, crit = string.match(a, "^(%d+)=([^=]+)=(%d+)(!?)$")
      table.insert(items, {n = n, v = v, ms = ms, crit = crit == "!"})
    end
    table.insert(st.pages, {inst = inst, items = items})
  end
  return st
end

local KINDS = {"login_page", "login", "page_get", "answer", "page_post", "done", "filler"}

function init(args)
  local path = os.getenv("MHP_WRK_PLAN")
  local total = tonumber(os.getenv("MHP_WRK_THREADS"))
  plans = {}
  local i = 0
  for line in io.lines(path) do
    if i % total == tid then
      table.insert(plans, line)
    end
    i = i + 1
  end
  nextplan = 1
  counts = {students_started = 0, students_finished = 0, students_abandoned = 0, critical_acks = 0,
            help_pages = 0, battery_submitted = 0, resumed_logins = 0, lost = 0, exhausted = 0}
  for _, k in ipairs(KINDS) do
    counts[k .. "_sent"] = 0
    counts[k .. "_ok"] = 0
    counts[k .. "_bad"] = 0
  end
  bad = {}  -- "kind:status" -> count
  finished = {}  -- codes of students who reached /s/done
  cur = nil
  inflight = nil
  verifying = tid == 0
end

local function start_student()
  if nextplan > #plans then
    cur = nil
    return false
  end
  cur = parse_plan(plans[nextplan])
  nextplan = nextplan + 1
  cur.step = "login_page"
  cur.page = 1
  cur.item = 1
  counts.students_started = counts.students_started + 1
  return true
end

local function cookies(with_student)
  local c = "mhp_session=" .. cur.session
  if with_student then
    c = c .. "; mhp_student=" .. cur.cookie
  end
  return c
end

local FORM = "application/x-www-form-urlencoded"

local function json_value(v)
  if string.match(v, "^%-?%d+$") then
    return v
  end
  return '"' .. v .. '"'
end

local function build()
  local s = cur.step
  if s == "login_page" then
    return "login_page", wrk.format("GET", "/s/", {})
  elseif s == "login" then
    local body = "code=" .. cur.code .. "&csrf_token=" .. cur.token
    return "login", wrk.format("POST", "/s/", {["Content-Type"] = FORM, ["Cookie"] = cookies(false)}, body)
  end
  local page = cur.pages[cur.page]
  if s == "page_get" then
    return "page_get", wrk.format("GET", "/s/p/" .. page.inst, {["Cookie"] = cookies(true)})
  elseif s == "answer" then
    local it = page.items[cur.item]
    local body = '{"instrument":"' .. page.inst .. '","item":' .. it.n .. ',"value":' .. json_value(it.v)
        .. ',"ms":' .. it.ms .. '}'
    return "answer", wrk.format("POST", "/s/answer", {["Content-Type"] = "application/json",
                                ["X-CSRFToken"] = cur.token, ["Cookie"] = cookies(true)}, body)
  elseif s == "page_post" then
    local parts = {"csrf_token=" .. cur.token}
    for _, it in ipairs(page.items) do
      table.insert(parts, "i" .. it.n .. "=" .. it.v .. "&t" .. it.n .. "=" .. it.ms)
    end
    return "page_post", wrk.format("POST", "/s/p/" .. page.inst, {["Content-Type"] = FORM,
                                   ["Cookie"] = cookies(true)}, table.concat(parts, "&"))
  elseif s == "done" then
    return "done", wrk.format("GET", "/s/done", {["Cookie"] = cookies(true)})
  end
  error("unknown step " .. tostring(s))
end

request = function()
  if verifying then  -- wrk calls request() once on thread 0's state to check the script: not sent
    verifying = false
    if cur == nil and not start_student() then
      return wrk.format("GET", "/s/", {})
    end
    local _, req = build()
    return req
  end
  if inflight ~= nil then  -- the connection closed before an answer: send the same step again
    counts.lost = counts.lost + 1
    bad["lost:" .. inflight] = (bad["lost:" .. inflight] or 0) + 1
  end
  if cur == nil and not start_student() then
    counts.exhausted = counts.exhausted + 1
    counts.filler_sent = counts.filler_sent + 1
    inflight = "filler"
    return wrk.format("GET", "/s/", {})
  end
  local kind, req = build()
  inflight = kind
  counts[kind .. "_sent"] = counts[kind .. "_sent"] + 1
  return req
end

local function page_critical(page)
  for _, it in ipairs(page.items) do
    if it.crit then
      return true
    end
  end
  return false
end

-- the expected answer for the step just sent; returns true when it is right (and advances)
local function check(kind, status, headers, body)
  if kind == "login_page" then
    local cookie = headers["Set-Cookie"] or ""
    cur.session = string.match(cookie, "^mhp_session=([^;]+)")
    cur.token = string.match(body, 'name="csrf%-token" content="([^"]+)"')
    if status ~= 200 or cur.session == nil or cur.token == nil then
      return false
    end
    cur.step = "login"
  elseif kind == "login" then
    if status ~= 303 or headers["Location"] ~= "/s/p/" .. cur.pages[1].inst then
      return false
    end
    cur.cookie = string.match(headers["Set-Cookie"] or "", "^mhp_student=([^;]+)")
    if cur.cookie == nil then
      return false
    end
    if cur.resumed then
      counts.resumed_logins = counts.resumed_logins + 1
    end
    cur.step = "page_get"
  elseif kind == "page_get" then
    if status ~= 200 then
      return false
    end
    cur.step = "answer"
    cur.item = 1
  elseif kind == "answer" then
    local page = cur.pages[cur.page]
    local it = page.items[cur.item]
    if status ~= 200 or not string.find(body, '"saved":true', 1, true) then
      return false
    end
    if it.crit then  -- this answer makes the page critical: the help must be shown at once
      if not string.find(body, '"critical":true', 1, true) then
        return false
      end
      counts.critical_acks = counts.critical_acks + 1
    end
    cur.item = cur.item + 1
    if cur.item > #page.items then
      cur.step = "page_post"
    end
  elseif kind == "page_post" then
    local page = cur.pages[cur.page]
    local nxt = cur.pages[cur.page + 1]
    if page_critical(page) then  -- without JavaScript the help page comes before going on
      if status ~= 200 or not string.find(body, 'id="continue"', 1, true) then
        return false
      end
      counts.help_pages = counts.help_pages + 1
    elseif status ~= 303 or headers["Location"] ~= (nxt and ("/s/p/" .. nxt.inst) or "/s/done") then
      return false
    end
    if nxt then
      cur.page = cur.page + 1
      cur.step = "page_get"
    else
      counts.battery_submitted = counts.battery_submitted + 1
      cur.step = "done"
    end
  elseif kind == "done" then
    if status ~= 200 then
      return false
    end
    counts.students_finished = counts.students_finished + 1
    table.insert(finished, cur.code)
    cur = nil
  end
  return true
end

response = function(status, headers, body)
  local kind = inflight
  inflight = nil
  if kind == nil then
    return
  end
  if kind == "filler" then
    counts.filler_ok = counts.filler_ok + 1
    return
  end
  if check(kind, status, headers, body) then
    counts[kind .. "_ok"] = counts[kind .. "_ok"] + 1
  else
    counts[kind .. "_bad"] = counts[kind .. "_bad"] + 1
    local key = kind .. ":" .. status
    bad[key] = (bad[key] or 0) + 1
    counts.students_abandoned = counts.students_abandoned + 1
    cur = nil
  end
end

local function json_obj(t)
  local parts = {}
  for k, v in pairs(t) do
    if type(v) == "number" then
      table.insert(parts, string.format('"%s":%.17g', k, v))
    else
      table.insert(parts, string.format('"%s":"%s"', k, tostring(v)))
    end
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

done = function(summary, latency, requests)
  local total, badall, codes = {}, {}, {}
  local inflight_n = 0
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("counts")) do
      total[k] = (total[k] or 0) + v
    end
    for k, v in pairs(t:get("bad")) do
      badall[k] = (badall[k] or 0) + v
    end
    for _, c in ipairs(t:get("finished")) do
      table.insert(codes, '"' .. c .. '"')
    end
    if t:get("inflight") ~= nil then
      inflight_n = inflight_n + 1
    end
  end
  total.inflight_at_stop = inflight_n
  local lat = {mean = latency.mean, max = latency.max, stdev = latency.stdev}
  for _, p in ipairs({50, 75, 90, 99, 99.9}) do
    lat["p" .. p] = latency:percentile(p)
  end
  local s = {requests = summary.requests, duration_us = summary.duration, bytes = summary.bytes,
             err_connect = summary.errors.connect, err_read = summary.errors.read,
             err_write = summary.errors.write, err_status = summary.errors.status,
             err_timeout = summary.errors.timeout}
  local out = '{"summary":' .. json_obj(s) .. ',"latency_us":' .. json_obj(lat) .. ',"counts":' .. json_obj(total)
      .. ',"bad":' .. json_obj(badall) .. ',"finished":[' .. table.concat(codes, ",") .. ']}'
  local f = assert(io.open(os.getenv("MHP_WRK_OUT"), "w"))
  f:write(out)
  f:close()
end
