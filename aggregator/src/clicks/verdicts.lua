-- Decides `duplicate` and `rate_limited` for a partition's clicks, in offset order, and
-- remembers each verdict by offset so that a batch replayed after a crash gets the
-- verdicts it got the first time (its own first pass already moved the state).
--
-- ARGV: memo key, trim offset (the batch's first offset: everything before it is in
-- both sinks, so the memo forgets it), dedupe window (ms), clicks a visitor may make in
-- a minute, state TTL (s); then per click, in offset order: offset, dedupe key (code and
-- visitor), rate key (the minute's hash), visitor, time (ms).
-- Returns one letter per click: v(alid), d(uplicate), r(ate-limited).
local memo_key, trim = ARGV[1], tonumber(ARGV[2])
local window, limit, ttl = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]

-- The memo: "FIRST_OFFSET|letters", one letter per offset ('.' where unknown).
local memo_start, letters = trim, ''
local old = redis.call('GET', memo_key)
if old then
  local sep = string.find(old, '|', 1, true)
  memo_start = tonumber(string.sub(old, 1, sep - 1))
  letters = string.sub(old, sep + 1)
  if memo_start < trim then
    letters = string.sub(letters, trim - memo_start + 1)
  else
    letters = string.rep('.', memo_start - trim) .. letters
  end
  memo_start = trim
end
local memo_end = memo_start + #letters -- first offset the memo does not cover

local verdicts, appended, expiring, filled = {}, {}, {}, {}
local next_offset = memo_end
for i = 6, #ARGV, 5 do
  local offset = tonumber(ARGV[i])
  local verdict
  if offset >= memo_start and offset < memo_end then
    verdict = string.sub(letters, offset - memo_start + 1, offset - memo_start + 1)
  end
  if verdict == nil or verdict == '.' then
    local dedupe_key, rate_key, visitor, at = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
    -- Rate limit: clicks per visitor and minute of event time, across codes.
    local clicks = redis.call('HINCRBY', rate_key, visitor, 1)
    if not expiring[rate_key] then
      redis.call('EXPIRE', rate_key, ttl)
      expiring[rate_key] = true
    end
    if clicks > limit then
      verdict = 'r'
    else
      -- Dedupe: a window opens at a visitor's first click on a code.
      local first = redis.call('SET', dedupe_key, at, 'NX', 'GET', 'EX', ttl)
      if first and math.abs(tonumber(at) - tonumber(first)) < window then
        verdict = 'd'
      else
        if first then redis.call('SET', dedupe_key, at, 'EX', ttl) end
        verdict = 'v'
      end
    end
    if offset >= memo_end then
      -- Offsets only grow within a call: pad skipped offsets, then this one.
      for _ = next_offset, offset - 1 do appended[#appended + 1] = '.' end
      appended[#appended + 1] = verdict
      next_offset = offset + 1
    else
      filled[offset - memo_start + 1] = verdict
    end
  end
  verdicts[#verdicts + 1] = verdict
end

-- Rare: verdicts decided inside the memo's range (a slot it did not know) are written in.
if next(filled) then
  local chars = {}
  for i = 1, #letters do chars[i] = filled[i] or string.sub(letters, i, i) end
  letters = table.concat(chars)
end
redis.call('SET', memo_key, memo_start .. '|' .. letters .. table.concat(appended), 'EX', 86400)
return table.concat(verdicts)
