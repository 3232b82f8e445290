-- wrk script for bench/processors.sh: creates a customer-initiated payment (POST /payments/one-off,
-- automatic capture) on one token per request. Settings come from the environment.

local key = os.getenv("STRONGROOM_BENCH_KEY")
local token = os.getenv("PAY_TOKEN")
local body = '{"amount":1000,"currency_code":"EUR","reference":"bench","capture":"automatic",'
  .. '"source":{"type":"token","token_id":"' .. token .. '"}}'

function request()
  return wrk.format("POST", "/payments/one-off", {
    ["Content-Type"] = "application/json",
    ["X-API-Key"] = key,
  }, body)
end
