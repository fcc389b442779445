-- Argo CD health check for mlops.retail.io/RetailModel (argocd-cm key
-- resource.customizations.health.mlops.retail.io_RetailModel; embedded by argocd-cm-health.yaml).
--
-- Progressing: no status yet, the operator has not observed the latest generation, or a scan /
--              rollout is under way.
-- Degraded:    the running image has findings the policy blocks (RunningImageCompliant=False:
--              it keeps serving, someone must act), the spec's image is blocked by its scan,
--              the model cannot be used, or the rollout failed.
-- Healthy:     Ready=True for the current generation.
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

local scan = condition("ImageScanPassed")
if scan ~= nil and scan.status == "False" and blockingScanReasons[scan.reason] then
  hs.status = "Degraded"
  hs.message = "Image blocked: " .. describe(scan, "ImageScanPassed is False")
  return hs
end

local model = condition("ModelAvailable")
if model ~= nil and model.status == "False" and blockingModelReasons[model.reason] then
  hs.status = "Degraded"
  hs.message = "Model unavailable: " .. describe(model, "ModelAvailable is False")
  return hs
end

local available = condition("Available")
if available ~= nil and available.status == "False" and failedRolloutReasons[available.reason] then
  hs.status = "Degraded"
  hs.message = "Rollout failed: " .. describe(available, "Available is False")
  return hs
end

local ready = condition("Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready, "Ready")
  return hs
end

-- Not ready and nothing blocking: a scan or a rollout is still under way.
hs.status = "Progressing"
hs.message = describe(ready or available or scan, "Rollout in progress")
return hs
