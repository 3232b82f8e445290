-- wrk script: POST /cde-import with a distinct, Luhn-valid test card on every request.
-- The API key comes from STRONGROOM_BENCH_KEY.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

local function with_check_digit(payload)
  local sum, double = 0, true
  for i = #payload, 1, -1 do
    local d = tonumber(payload:sub(i, i))
    if double then
      d = d * 2
      if d > 9 then d = d - 9 end
    end
    sum = sum + d
    double = not double
  end
  return payload .. tostring((10 - sum % 10) % 10)
end

function init(args)
  math.randomseed(os.time() + (tid or 1) * 7919)
  counter = math.random(0, 999999) * 1000000
  key = os.getenv("STRONGROOM_BENCH_KEY")
end

function request()
  counter = counter + 1
  local pan = with_check_digit(string.format("4%02d%012d", tid or 1, counter))
  local body = string.format(
    '{"account_number":"%s","expiry_month":4,"expiry_year":2031,"cardholder_name":"Bench Holder","security_code":"123"}',
    pan)
  return wrk.format("POST", "/cde-import",
    { ["Content-Type"] = "application/json", ["X-API-Key"] = key }, body)
end
