-- Argo CD health check for mlops.retail.io/RetailModel (argocd-cm key
-- resource.customizations.health.mlops.retail.io_RetailModel; embedded by argocd-cm-health.yaml).
--
-- Progressing: no status yet, the operator has not observed the latest generation, a scan is
--              pending or running, AWS could not answer (the check is retried), a rollout is
--              under way, or a model canary is being analysed (even while Ready is True: the
--              stable pods serve, the candidate is not promoted yet).
-- Degraded:    the running image has findings the policy blocks (RunningImageCompliant=False:
--              it keeps serving, someone must act), the spec cannot be carried out (a child's
--              name is held by another object, the spec cannot be read, or it breaks the
--              platform's RetailModelPolicy), the spec's image is
--              blocked by its scan or refused for its signature, the model cannot be used or
--              is refused for its signature, the rollout failed, or a model
--              canary was rolled back (by a rule, inconclusive, or refused without traffic).
--              A blocking reason on Ready alone is enough: Ready is the operator's summary.
-- Healthy:     Ready=True for the current generation, no canary under analysis; a Drift=True
--              condition (the model has gone stale) is added to the message, not Degraded.
local hs = {}

local function condition(conditionType)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == conditionType then
      return c
    end
  end
  return nil
end

local function describe(c, fallback)
  if c == nil then
    return fallback
  end
  local text = c.reason or fallback
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end

local blockingScanReasons = {
  VulnerabilitiesFound = true, ScanFailed = true, ScanMissing = true, ImageNotFound = true,
  ScanIncomplete = true, ScanUnavailable = true, ScanUnsupported = true,
  FindingsUnavailable = true, ScanEligibilityExpired = true, ImageArchived = true,
}
local blockingModelReasons = { ModelNotFound = true, ChecksumMismatch = true, AccessDenied = true }
local refusedSignatureReasons = {
  Unsigned = true, SignatureInvalid = true, UntrustedKey = true, TrustedKeysInvalid = true,
}
-- The registry refusing the operator's ECR credentials is the image's problem, not the model's.
local refusedImageSignatureReasons = {
  Unsigned = true, SignatureInvalid = true, UntrustedKey = true, TrustedKeysInvalid = true,
  AccessDenied = true,
}
local failedRolloutReasons = { ProgressDeadlineExceeded = true, RolloutFailed = true }

if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local running = condition("RunningImageCompliant")
if running ~= nil and running.status == "False" then
  hs.status = "Degraded"
  hs.message = "Running image out of policy: " .. describe(running, "RunningImageCompliant is False")
  return hs
end

local function blocks(c, reasons)
  return c ~= nil and c.status == "False" and reasons[c.reason] == true
end

local ready = condition("Ready")
-- Each blocking check: its own condition (if any) with a reason that blocks, or Ready's
-- summary carrying that reason. The first that blocks says why. An image refused for its
-- signature is known by its own condition only (always written beside Ready's), so that
-- Ready's Unsigned, SignatureInvalid or UntrustedKey for a model is not taken for the image's.
local refusedReasons = { NameConflict = true, SpecInvalid = true, PolicyViolation = true }
local blockingChecks = {
  { kind = nil, reasons = refusedReasons, prefix = "Spec not carried out: " },
  { kind = "ImageScanPassed", reasons = blockingScanReasons, prefix = "Image blocked: " },
  { kind = "ImageSignatureVerified", reasons = refusedImageSignatureReasons, prefix = "Image refused: ", ownOnly = true },
  { kind = "ModelAvailable", reasons = blockingModelReasons, prefix = "Model unavailable: " },
  { kind = "ModelSignatureVerified", reasons = refusedSignatureReasons, prefix = "Model refused: " },
}
for _, check in ipairs(blockingChecks) do
  local own = check.kind and condition(check.kind) or nil
  local why = nil
  if blocks(own, check.reasons) then
    why = own
  elseif not check.ownOnly and blocks(ready, check.reasons) then
    why = ready
  end
  if why ~= nil then
    hs.status = "Degraded"
    hs.message = check.prefix .. describe(why, (check.kind or "Ready") .. " is False")
    return hs
  end
end

local available = condition("Available")
if available ~= nil and available.status == "False" and failedRolloutReasons[available.reason] then
  hs.status = "Degraded"
  hs.message = "Rollout failed: " .. describe(available, "Available is False")
  return hs
end

-- The model canary: status.rollout.phase, and the ModelRolledOut condition when there is one.
local canary = condition("ModelRolledOut")
local phase = obj.status.rollout ~= nil and obj.status.rollout.phase or nil
local figures = obj.status.rollout ~= nil and obj.status.rollout.figures or nil
local summary = figures ~= nil and figures.summary or nil
local function canaryText(fallback)
  if canary ~= nil then
    return describe(canary, fallback)
  end
  if summary ~= nil and summary ~= "" then
    return fallback .. ": " .. summary
  end
  return fallback
end
local rolledBackReasons = { RolledBack = true, Inconclusive = true, RejectedBefore = true, Sha256Required = true }
if phase == "RolledBack" or (canary ~= nil and canary.status == "False" and rolledBackReasons[canary.reason]) then
  hs.status = "Degraded"
  hs.message = "Model canary rolled back: " .. canaryText("RolledBack")
  return hs
end
if phase == "Analyzing" or (canary ~= nil and canary.reason == "Analyzing") then
  hs.status = "Progressing"
  hs.message = "Model canary under analysis: " .. canaryText("Analyzing")
  return hs
end

if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready, "Ready")
  -- Drift is a message, never Degraded: a stale model still answers every request, and
  -- Degraded is what pages people and triggers rollbacks meant for outages.
  local drift = condition("Drift")
  if drift ~= nil and drift.status == "True" then
    hs.message = hs.message .. " (Drift: " .. describe(drift, "Drift") .. ")"
  end
  return hs
end

-- Not ready and nothing blocking: a scan or a rollout is still under way.
hs.status = "Progressing"
hs.message = describe(ready or available or scan, "Rollout in progress")
return hs
