namespace Herald.Redis;

/// <summary>
/// The Lua scripts of the broker. Each runs atomically on the server that holds the channel's keys, with the server's
/// clock (<c>TIME</c>), so every node agrees on timestamps and on what has expired.
/// </summary>
internal static class RedisScripts
{
    // Drops the oldest entries of a stream whose timestamp (field 't') is older than the cutoff. Offsets and timestamps
    // grow together, so it stops at the first entry it keeps: nothing to do costs one XRANGE of one entry.
    private const string TrimExpired = """
        local function trim_expired(stream, cutoff)
          while true do
            local batch = redis.call('XRANGE', stream, '-', '+', 'COUNT', 16)
            if #batch == 0 then return end
            for _, entry in ipairs(batch) do
              local fields = entry[2]
              local ts = 0
              for i = 1, #fields, 2 do
                if fields[i] == 't' then ts = tonumber(fields[i + 1]) end
              end
              if ts >= cutoff then
                redis.call('XTRIM', stream, 'MINID', entry[1])
                return
              end
            end
            local last = batch[#batch][1]
            redis.call('XTRIM', stream, 'MINID', string.format('%d', tonumber(string.match(last, '^(%d+)')) + 1))
          end
        end
        local function now_ms()
          local t = redis.call('TIME')
          return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        end
        """;

    /// <summary>
    /// KEYS: meta, stream, and for an idempotent publish the key's key. ARGV: data, has info ('1'/'0'), user, client,
    /// history size, history TTL ms, a fresh epoch (used when the channel has none), Pub/Sub channel, sharded ('1':
    /// <c>SPUBLISH</c>, on a Redis Cluster; '0': <c>PUBLISH</c>), the key's window ms for an idempotent publish ('' otherwise),
    /// and the data's field: 'd' for JSON, 'b' for bytes.
    /// Returns { offset, epoch, timestamp, repeated (1/0) }.
    /// </summary>
    /// <remarks>
    /// Appending and publishing in one script is what makes delivery order offset order: Redis runs one script at a
    /// time, so two publications of a channel reach the Pub/Sub channel in the order their offsets were given.
    /// The message published is <c>"&lt;offset&gt; &lt;epoch&gt; &lt;timestamp&gt; &lt;user bytes&gt; &lt;client bytes&gt;\n"</c>
    /// followed by the user, the client and the data (user and client lengths -1 when there is no info; the header ends
    /// in <c>" b"</c> when the data is bytes): binary-safe,
    /// and the data travels as is (see <see cref="PublicationMessage"/>). On a Cluster the sharded Pub/Sub channel carries
    /// the channel's hash tag, so it is on the slot of the keys and the script may publish on it.
    /// <para>An idempotency key is a string key beside the channel's (same hash tag) holding <c>"&lt;offset&gt; &lt;epoch&gt;"</c>
    /// of the first publication with it, set with <c>NX PX</c> so Redis forgets it after the window. A repeat within the
    /// window answers that position and publishes nothing. Checked and set in this script, so concurrent repeats from any
    /// nodes make one publication.</para>
    /// </remarks>
    public const string Publish = TrimExpired + "\n" + """
        local meta, stream, idem = KEYS[1], KEYS[2], KEYS[3]
        local data, has_info, user, client = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
        local size, ttl, fresh_epoch, pubsub = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7], ARGV[8]
        local publish = ARGV[9] == '1' and 'SPUBLISH' or 'PUBLISH'
        local field = ARGV[11] == 'b' and 'b' or 'd'
        local kind = field == 'b' and ' b' or ''
        if idem then
          local seen = redis.call('GET', idem)
          if seen then
            local first_offset, first_epoch = string.match(seen, '^(%d+) (.+)$')
            return { tonumber(first_offset), first_epoch, 0, 1 }
          end
        end
        local epoch = redis.call('HGET', meta, 'epoch')
        if not epoch then
          -- A new log: whatever stream an older generation left is not part of it.
          epoch = fresh_epoch
          redis.call('HSET', meta, 'epoch', epoch)
          redis.call('DEL', stream)
        end
        -- A read may have created the epoch with an expiry; once published to, the head and epoch stay.
        redis.call('PERSIST', meta)
        local offset = redis.call('HINCRBY', meta, 'head', 1)
        local now = now_ms()
        local id = string.format('%d', offset)
        if size > 0 then
          if has_info == '1' then
            redis.call('XADD', stream, id .. '-0', 't', now, field, data, 'u', user, 'c', client)
          else
            redis.call('XADD', stream, id .. '-0', 't', now, field, data)
          end
          redis.call('XTRIM', stream, 'MAXLEN', size)
          if ttl > 0 then
            trim_expired(stream, now - ttl)
            -- The newest entry expires last, so the whole stream may go then: an idle channel frees its history.
            redis.call('PEXPIRE', stream, ttl)
          end
        else
          redis.call('DEL', stream)
        end
        local header
        if has_info == '1' then
          header = id .. ' ' .. epoch .. ' ' .. string.format('%d', now) .. ' ' .. #user .. ' ' .. #client .. kind .. '\n' .. user .. client
        else
          header = id .. ' ' .. epoch .. ' ' .. string.format('%d', now) .. ' -1 -1' .. kind .. '\n'
        end
        redis.call(publish, pubsub, header .. data)
        if idem then
          redis.call('SET', idem, id .. ' ' .. epoch, 'NX', 'PX', tonumber(ARGV[10]))
        end
        return { offset, epoch, now, 0 }
        """;

    /// <summary>
    /// KEYS: meta, stream. ARGV: cursor offset ('' for the newest), limit, history TTL ms, a fresh epoch, how long an
    /// epoch made by a read lives without a publication (ms), direction ('1': backward, the publications before the
    /// cursor newest first; '0': forward, those after it oldest first). Returns { head, epoch, entries, entries newest
    /// first (1/0), more held past the last entry (backward only; 1/0) }.
    /// </summary>
    /// <remarks>
    /// A channel never published to gets its epoch here, so the first publication keeps the epoch a read promised. It
    /// expires unless a publication comes, so reading made-up channel names does not fill Redis. A backward read asks
    /// for one entry more than the limit, to learn whether older ones are held without a second command.
    /// </remarks>
    public const string Read = TrimExpired + "\n" + """
        local meta, stream = KEYS[1], KEYS[2]
        local cursor, limit, ttl, fresh_epoch, idle = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
        local backward = ARGV[6] == '1'
        local state = redis.call('HMGET', meta, 'head', 'epoch')
        local head, epoch = tonumber(state[1]) or 0, state[2]
        if not epoch then
          epoch = fresh_epoch
          redis.call('HSET', meta, 'epoch', epoch)
          redis.call('PEXPIRE', meta, idle)
        elseif head == 0 then
          redis.call('PEXPIRE', meta, idle)
        end
        if head == 0 or limit <= 0 then
          return { head, epoch, {}, 0, 0 }
        end
        if backward then
          local top = '+'
          if cursor ~= '' then
            local before = tonumber(cursor)
            if before <= 1 then
              return { head, epoch, {}, 1, 0 }
            end
            top = string.format('%d', before - 1) .. '-0'
          end
          if ttl > 0 then
            trim_expired(stream, now_ms() - ttl)
          end
          local entries = redis.call('XREVRANGE', stream, top, '-', 'COUNT', limit + 1)
          local more = 0
          if #entries > limit then
            more = 1
            entries[#entries] = nil
          end
          return { head, epoch, entries, 1, more }
        end
        if cursor ~= '' and tonumber(cursor) >= head then
          return { head, epoch, {}, 0, 0 }
        end
        if ttl > 0 then
          trim_expired(stream, now_ms() - ttl)
        end
        if cursor == '' then
          return { head, epoch, redis.call('XREVRANGE', stream, '+', '-', 'COUNT', limit), 1, 0 }
        end
        local from = string.format('%d', tonumber(cursor) + 1) .. '-0'
        return { head, epoch, redis.call('XRANGE', stream, from, '+', 'COUNT', limit), 0, 0 }
        """;

    /// <summary>
    /// KEYS: meta, stream. ARGV: after offset, limit. Returns { head, epoch ('' when the channel has none), entries after
    /// the offset, oldest first }. Changes nothing: the broker fills a gap in what it delivered with it.
    /// </summary>
    /// <remarks>Head, epoch and entries are read together, so the entries are known to belong to that epoch.</remarks>
    public const string Range = """
        local meta, stream = KEYS[1], KEYS[2]
        local after, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
        local state = redis.call('HMGET', meta, 'head', 'epoch')
        local head, epoch = tonumber(state[1]) or 0, state[2] or ''
        if epoch == '' or limit <= 0 or after >= head then
          return { head, epoch, {} }
        end
        return { head, epoch, redis.call('XRANGE', stream, string.format('%d', after + 1) .. '-0', '+', 'COUNT', limit) }
        """;

    /// <summary>
    /// KEYS: meta, stream. ARGV: the epoch a node delivered in, the offset it delivered up to, a fresh epoch. When the channel's
    /// head is lower than that offset in that same epoch, Redis lost writes (a failover, a restore): the log gets the
    /// fresh epoch, so nothing published from now on reuses an offset clients already saw. Returns { head, epoch,
    /// renewed here (1/0) }.
    /// </summary>
    /// <remarks>
    /// Within an epoch the head only grows (<c>HINCRBY</c>), so a lower head is always lost data; checking here, in one
    /// script, rather than on the node, makes a head the node read before newer publications reached it harmless.
    /// The stream is kept up to the head: what survived is part of the new epoch's history.
    /// </remarks>
    public const string RenewEpoch = """
        local meta, stream = KEYS[1], KEYS[2]
        local expected, delivered, fresh = ARGV[1], tonumber(ARGV[2]), ARGV[3]
        local state = redis.call('HMGET', meta, 'head', 'epoch')
        local head = tonumber(state[1]) or 0
        if state[2] == expected and head < delivered then
          redis.call('HSET', meta, 'epoch', fresh)
          -- Entries past the head (left when the hash lost writes the stream kept) would make every next XADD fail.
          if redis.call('EXISTS', stream) == 1 then
            for _, entry in ipairs(redis.call('XRANGE', stream, string.format('%d', head + 1) .. '-0', '+')) do
              redis.call('XDEL', stream, entry[1])
            end
            redis.call('XSETID', stream, string.format('%d', head) .. '-0')
          end
          return { head, fresh, 1 }
        end
        return { head, state[2] or '', 0 }
        """;
}
