-- lib/room: what several room scripts share, put in front of a script by `--#include room`
-- (embed_scripts.cmake). Local functions only: a script that includes it pays for defining
-- them (well under a microsecond), not for what it does not call.

-- Publishes msg on a room's channel. ch is the channel as ledger_client/keys.c names it, with
-- a first character that says how: 'S' sharded (SPUBLISH, a Redis Cluster: the channel shares
-- the room's hash tag, so it stays on the room's shard), 'P' classic (PUBLISH, one Redis).
local function room_publish(ch, msg)
  redis.call(string.sub(ch, 1, 1) == 'S' and 'SPUBLISH' or 'PUBLISH', string.sub(ch, 2), msg)
end

-- A room's seq key is the string "seq epoch". The epoch is made when the key is made (Redis's
-- clock in microseconds), so it changes exactly when the seq starts over (the key was lost).
local function room_new_epoch()
  local t = redis.call('TIME')
  return t[1] .. string.format('%06d', tonumber(t[2]))
end

-- The seq and epoch of a seq key's value (a string, or false/nil for no key). fresh is true
-- when the epoch was made now: the caller writes "seq epoch" back.
local function room_seq_parse(v)
  local n, e
  if v then
    n, e = string.match(v, '^(%d+) ?(%d*)$')
  end
  if not e or e == '' then
    return tonumber(n or '0'), room_new_epoch(), true
  end
  return tonumber(n), e, false
end

-- The seq and epoch of a room, writing the epoch when the key had none.
local function room_seq(kseq)
  local n, e, fresh = room_seq_parse(redis.call('GET', kseq))
  if fresh then
    redis.call('SET', kseq, string.format('%d', n) .. ' ' .. e)
  end
  return n, e
end

-- The goal in a totals string ("gifts coins diamonds" US id US gift US target US current US
-- reached US title JSON, goal.lua) as JSON text and its id:current, or 'null' and ''.
local function room_goal_of(tot)
  local id, gift, target, cur, reached, title = string.match(tot,
    '^%d+ %d+ %d+\31([^\31]*)\31([^\31]*)\31(%d+)\31(%d+)\31(%d)\31(.*)$')
  if not id then
    return 'null', ''
  end
  return '{"id":"' .. id .. '","title":' .. title .. ',"gift":' ..
    (gift == '' and 'null' or '"' .. gift .. '"') .. ',"target":' .. target .. ',"current":' ..
    cur .. ',"reached":' .. (reached == '1' and 'true' or 'false') .. '}', id .. ':' .. cur
end

-- The goal part of a totals string (after "gifts coins diamonds": US id US gift US target US
-- current US reached US title JSON) as {id, gift ('' for coins), target, current, reached,
-- title JSON}, or nil.
local function room_goal_parse(rest)
  local id, gift, target, cur, reached, title =
    string.match(rest or '', '^\31([^\31]*)\31([^\31]*)\31(%d+)\31(%d+)\31(%d)\31(.*)$')
  if not id then
    return nil
  end
  return {id, gift, tonumber(target), tonumber(cur), reached == '1', title}
end

-- A totals string: "gifts coins diamonds" and the goal part when the room has a goal.
local function room_totals_text(g, c, d, goal)
  local t = string.format('%d %d %d', g, c, d)
  if goal then
    t = t .. '\31' .. goal[1] .. '\31' .. goal[2] .. '\31' .. string.format('%d', goal[3]) ..
      '\31' .. string.format('%d', goal[4]) .. '\31' .. (goal[5] and '1' or '0') .. '\31' ..
      goal[6]
  end
  return t
end

-- A send's progress on the room's goal (room_goal_parse's table, or nil): the goal_reached
-- event, numbered seq, the first time the target is met; else nil.
local function room_goal_step(goal, room, gid, cost, count, seq, ts)
  if not goal or goal[5] then
    return nil
  end
  if goal[2] == '' then
    goal[4] = goal[4] + cost
  elseif goal[2] == gid then
    goal[4] = goal[4] + count
  end
  if goal[4] < goal[3] then
    return nil
  end
  goal[5] = true
  return '{"type":"goal_reached","room":"' .. room .. '","seq":' .. string.format('%d', seq) ..
    ',"goal":{"id":"' .. goal[1] .. '","title":' .. goal[6] .. ',"gift":' ..
    (goal[2] == '' and 'null' or '"' .. goal[2] .. '"') .. ',"target":' ..
    string.format('%d', goal[3]) .. ',"current":' .. string.format('%d', goal[4]) ..
    ',"reached":true},"ts_ms":' .. ts .. '}'
end

-- Appends events (oldest first) to the room's history (a list, newest first), trimming it
-- back to cap once it is 64 over. The key expires ttl_ms after it was made or last trimmed;
-- room_presence.lua pushes the expiry on while the room has viewers.
local function room_hist_push(kh, events, cap, ttl_ms)
  local n = redis.call('LPUSH', kh, unpack(events))
  if n > cap + 64 then
    redis.call('LTRIM', kh, 0, cap - 1)
    redis.call('PEXPIRE', kh, ttl_ms)
  elseif n == #events then
    redis.call('PEXPIRE', kh, ttl_ms)
  end
end

-- The kept events after seq since, oldest first, at most limit, and whether none after since
-- was dropped. last is the room's seq. An event is kept while it is one of the last size
-- events and younger than ttl_ms (its ts_ms against now_ms).
local function room_hist_after(kh, last, since, limit, size, ttl_ms, now_ms)
  if since >= last then
    return {}, true
  end
  local cutoff = now_ms - ttl_ms
  -- The events of seqs (from, to]: the list holds seq X at index last - X (each script bumps
  -- the seq and pushes its event in one step). Each event is still checked: from the oldest
  -- one young enough, they must follow one another (a room event ends with its ts_ms).
  local function collect(from, to)
    local got = redis.call('LRANGE', kh, last - to, last - from - 1)
    local out, prev = {}, nil
    for i = #got, 1, -1 do
      local e = got[i]
      local s = tonumber(string.match(e, '"seq":(%d+)') or '0')
      if prev then
        if s ~= prev + 1 then
          break
        end
        out[#out + 1] = e
        prev = s
      elseif s > from and s <= to and
          tonumber(string.match(e, '"ts_ms":(%d+)}$') or '0') >= cutoff then
        out[1] = e
        prev = s
      end
    end
    return out, prev and prev - #out + 1
  end
  local lo = since
  if last - size > lo then
    lo = last - size
  end
  -- A window whose events are all too old moves on to the next.
  while lo < last do
    local hi = math.min(last, lo + limit)
    local out, first = collect(lo, hi)
    if first then
      if first > lo + 1 and hi < last then
        out = collect(first - 1, math.min(last, first - 1 + limit))
      end
      return out, first == since + 1
    end
    lo = hi
  end
  return {}, false
end
