-- Decides `duplicate` and `rate_limited` for a partition's clicks, in offset order, and
-- remembers each verdict by offset so that a batch replayed after a crash gets the
-- verdicts it got the first time (its own first pass already moved the state).
--
-- ARGV: memo key, trim offset (the batch's first offset: everything before it is in
-- both sinks, so the memo forgets it), dedupe window (ms), clicks a visitor may make in
-- a minute, state TTL (s), key prefix; then per click: offset, code, visitor, time (ms).
-- Returns one letter per click: v(alid), d(uplicate), r(ate-limited).
local memo_key, trim = ARGV[1], tonumber(ARGV[2])
local window, limit, ttl, prefix = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]

-- The memo: "FIRST_OFFSET|letters", one letter per offset ('.' where unknown).
local memo = {}
local old = redis.call('GET', memo_key)
if old then
  local sep = string.find(old, '|', 1, true)
  local start = tonumber(string.sub(old, 1, sep - 1))
  local letters = string.sub(old, sep + 1)
  for offset = math.max(start, trim), start + #letters - 1 do
    local i = offset - start + 1
    memo[offset - trim + 1] = string.sub(letters, i, i)
  end
end

local verdicts = {}
for i = 7, #ARGV, 4 do
  local slot = tonumber(ARGV[i]) - trim + 1
  local verdict = memo[slot]
  if verdict == nil or verdict == '.' then
    local code, visitor, at = ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
    -- Rate limit: clicks per visitor and minute of event time, across codes.
    local rate_key = prefix .. 'rl:' .. visitor .. ':' .. math.floor(at / 60000)
    local clicks = redis.call('INCR', rate_key)
    if clicks == 1 then redis.call('EXPIRE', rate_key, ttl) end
    if clicks > limit then
      verdict = 'r'
    else
      -- Dedupe: a window opens at a visitor's first click on a code.
      local dedupe_key = prefix .. 'dd:' .. code .. ':' .. visitor
      local first = redis.call('GET', dedupe_key)
      if first and math.abs(at - tonumber(first)) < window then
        verdict = 'd'
      else
        redis.call('SET', dedupe_key, at, 'EX', ttl)
        verdict = 'v'
      end
    end
    memo[slot] = verdict
  end
  verdicts[#verdicts + 1] = verdict
end

local last = 0
for slot in pairs(memo) do
  if slot > last then last = slot end
end
for slot = 1, last do
  if memo[slot] == nil then memo[slot] = '.' end
end
redis.call('SET', memo_key, trim .. '|' .. table.concat(memo), 'EX', 86400)
return table.concat(verdicts)
