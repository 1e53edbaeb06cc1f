-- mixerhub: a Mixer client for stock Envoy's Lua HTTP filter (docs/envoy.md).
--
-- The configuration table MIXERHUB is prepended by `mixerhub envoy-config`:
--   cluster, authority, timeout_ms, fail_open, max_entries,
--   static = { {name, text, json}, ... }   attributes fixed for this listener.
--
-- Per Envoy worker (each has its own Lua state) the filter keeps a decision cache keyed by
-- the attributes the hub said a verdict depends on. A "shape" is one such set of
-- references; a hit computes one key per known shape (a few header reads and one concat)
-- and applies the stored verdict. A miss asks the hub (POST /v1/check, line reply form),
-- applies the answer and stores it when the hub says it may be reused (never when it
-- charged a quota). An unreachable hub gets the configured fail policy.

local C = MIXERHUB
local shapes = {}       -- array of {sig, refs, entries}
local shape_by_sig = {}
local held = 0          -- entries over all shapes

-- ---- attributes of a request ---------------------------------------------------------

local function path(v) return v.hdrs:get(":path") end

local function url_path(v)
  local p = path(v)
  if not p then return nil end
  local q = p:find("?", 1, true)
  if q then return p:sub(1, q - 1) end
  return p
end

local function unescape(s)
  s = s:gsub("+", " ")
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local function query(v)
  local t = v.query
  if t then return t end
  t = {}
  local p = path(v) or ""
  local q = p:find("?", 1, true)
  if q then
    for pair in p:sub(q + 1):gmatch("[^&]+") do
      local k, val = pair:match("^([^=]*)=?(.*)$")
      k = unescape(k)
      if t[k] == nil then t[k] = unescape(val) end
    end
  end
  v.query = t
  return t
end

local function peer(v)
  local a = v.peer
  if a == nil then
    a = v.h:streamInfo():downstreamRemoteAddress() or ""
    v.peer = a
  end
  return a
end

local function header(name) return function(v) return v.hdrs:get(name) end end

local SCALARS = {
  ["request.path"] = path,
  ["request.url_path"] = url_path,
  ["request.method"] = header(":method"),
  ["request.host"] = header(":authority"),
  ["request.scheme"] = header(":scheme"),
  ["request.id"] = header("x-request-id"),
  ["request.useragent"] = header("user-agent"),
  ["source.ip"] = function(v) return peer(v):match("^%[?(.-)%]?:%d+$") end,
  ["source.port"] = function(v) return peer(v):match(":(%d+)$") end,
  ["context.protocol"] = function(v)
    local ct = v.hdrs:get("content-type")
    if ct and ct:sub(1, 16) == "application/grpc" then return "grpc" end
    return "http"
  end,
}
local INTS = { ["source.port"] = true }
local MAPS = {
  ["request.headers"] = function(v, k) return v.hdrs:get(k) end,
  ["request.query_params"] = function(v, k) return query(v)[k] end,
}
local STATIC_JSON = {}
for _, a in ipairs(C.static) do
  local text = a[2]
  SCALARS[a[1]] = function() return text end
  STATIC_JSON[a[1]] = a[3]
end
local function absent() return nil end

-- ---- the cache ---------------------------------------------------------------------------

local function key_of(shape, v)
  local refs, parts = shape.refs, {}
  for i = 1, #refs do
    local r = refs[i]
    local val
    if r.map then val = r.map(v, r.key) else val = r.get(v) end
    parts[i] = val or "\1"
  end
  return table.concat(parts, "\0")
end

local function lookup(v, now)
  for i = 1, #shapes do
    local s = shapes[i]
    local k = key_of(s, v)
    local e = s.entries[k]
    if e then
      if e.expires > now and e.uses > 0 then
        e.uses = e.uses - 1
        return e
      end
      s.entries[k] = nil
      held = held - 1
    end
  end
  return nil
end

local function shape_for(specs)
  table.sort(specs)
  local sig = table.concat(specs, "\n")
  local s = shape_by_sig[sig]
  if s then return s end
  local refs = {}
  for i, spec in ipairs(specs) do
    local name, key = spec:match("^([^\t]*)\t?(.*)$")
    if key ~= "" then
      refs[i] = { map = MAPS[name] or absent, key = key }
    else
      refs[i] = { get = SCALARS[name] or absent }
    end
  end
  s = { sig = sig, refs = refs, entries = {} }
  shapes[#shapes + 1] = s
  shape_by_sig[sig] = s
  return s
end

local function store(v, e, now)
  if held >= C.max_entries then  -- full: start over rather than scan for victims
    for i = 1, #shapes do shapes[i].entries = {} end
    held = 0
  end
  e.expires = now + e.duration_ms
  local s = shape_for(e.specs)
  local k = key_of(s, v)
  if s.entries[k] == nil then held = held + 1 end
  s.entries[k] = e
end

-- ---- talking to the hub -------------------------------------------------------------------

local ESC = { ['"'] = '\\"', ['\\'] = '\\\\', ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t' }
local function jstr(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return ESC[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

local function jobject(pairs_list)
  return "{" .. table.concat(pairs_list, ",") .. "}"
end

local function request_json(v)
  local parts = {}
  for name, get in pairs(SCALARS) do
    local val = get(v)
    if val then
      local json = STATIC_JSON[name] or (INTS[name] and val) or jstr(val)
      parts[#parts + 1] = jstr(name) .. ":" .. json
    end
  end
  local hdrs = {}
  for k, val in pairs(v.hdrs) do hdrs[#hdrs + 1] = jstr(k) .. ":" .. jstr(val) end
  parts[#parts + 1] = '"request.headers":' .. jobject(hdrs)
  local qp = {}
  for k, val in pairs(query(v)) do qp[#qp + 1] = jstr(k) .. ":" .. jstr(val) end
  if #qp > 0 then parts[#parts + 1] = '"request.query_params":' .. jobject(qp) end
  return '{"attributes":' .. jobject(parts) .. "}"
end

local function parse(text)
  local e = { req = {}, resp = {}, hdrs = {}, specs = {}, body = "" }
  local pos = 1
  while pos <= #text do
    local nl = text:find("\n", pos, true) or (#text + 1)
    local tag, a, b, c = text:sub(pos, nl - 1):match("^([%w_]+)\t?([^\t]*)\t?([^\t]*)\t?(.*)$")
    if tag == "body" then
      e.body = text:sub(pos + 5)
      break
    elseif tag == "code" then e.code = tonumber(a)
    elseif tag == "http" then e.http = a
    elseif tag == "duration_ms" then e.duration_ms = tonumber(a)
    elseif tag == "uses" then e.uses = tonumber(a)
    elseif tag == "cache" then e.cache = (a == "1")
    elseif tag == "ref" then
      local name = a:gsub("^%-", "")
      e.specs[#e.specs + 1] = (b ~= "" and (name .. "\t" .. b)) or name
    elseif tag == "req" then e.req[#e.req + 1] = { a, b, c }
    elseif tag == "resp" then e.resp[#e.resp + 1] = a .. "\t" .. b .. "\t" .. c
    elseif tag == "hdr" then e.hdrs[a] = b
    end
    pos = nl + 1
  end
  e.resp = table.concat(e.resp, "\n")
  return e
end

local CALL_HEADERS = {
  [":method"] = "POST", [":path"] = "/v1/check", [":authority"] = C.authority,
  ["content-type"] = "application/json", ["accept"] = "text/x-mixerhub-verdict",
}

local function ask_hub(h, v)
  local ok, headers, body = pcall(h.httpCall, h, C.cluster, CALL_HEADERS, request_json(v),
                                  C.timeout_ms)
  if not ok or not headers or headers[":status"] ~= "200" or not body then return nil end
  local e = parse(body)
  if e.code == nil then return nil end
  return e
end

-- ---- the filter ---------------------------------------------------------------------------

local function apply(h, v, e)
  if e.code ~= 0 then
    local hdrs = { [":status"] = e.http }
    for k, val in pairs(e.hdrs) do hdrs[k] = val end
    h:respond(hdrs, e.body)
    return
  end
  for i = 1, #e.req do
    local op = e.req[i]
    if op[1] == "set" then v.hdrs:replace(op[2], op[3])
    elseif op[1] == "append" then v.hdrs:add(op[2], op[3])
    else v.hdrs:remove(op[2]) end
  end
  if e.resp ~= "" then h:streamInfo():dynamicMetadata():set("mixerhub", "resp", e.resp) end
end

local function unreachable(h)
  h:streamInfo():dynamicMetadata():set("mixerhub", "hub_unreachable", true)
  if not C.fail_open then
    h:respond({ [":status"] = "503", ["content-type"] = "text/plain" },
              "mixerhub: the policy hub is unreachable")
  end
end

local function on_request(h)
  local v = { h = h, hdrs = h:headers() }
  local now = h:timestamp()
  local e = lookup(v, now)
  if e then
    apply(h, v, e)
    return
  end
  e = ask_hub(h, v)
  if e == nil then return unreachable(h) end
  v.hdrs = h:headers()  -- wrappers taken before the call's yield are no longer valid
  h:streamInfo():dynamicMetadata():set("mixerhub", "cache_miss", true)
  e.uses = e.uses - 1  -- this request is the first use
  if e.cache and e.uses > 0 and e.duration_ms > 0 then store(v, e, now) end
  apply(h, v, e)
end

function envoy_on_request(h)
  -- A fault in this script must not let a request past a fail-closed policy.
  local ok, err = pcall(on_request, h)
  if not ok then
    h:logErr("mixerhub filter failed: " .. tostring(err))
    unreachable(h)
  end
end

function envoy_on_response(h)
  local md = h:streamInfo():dynamicMetadata():get("mixerhub")
  local ops = md and md["resp"]
  if not ops then return end
  local hdrs = h:headers()
  for op, name, val in ops:gmatch("([^\t\n]*)\t([^\t\n]*)\t([^\n]*)") do
    if op == "set" then hdrs:replace(name, val)
    elseif op == "append" then hdrs:add(name, val)
    else hdrs:remove(name) end
  end
end
