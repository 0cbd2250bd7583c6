import MemwardenModel

// The mapping lives beside the stage it configures, so the policy model needs
// nothing from Detection.
extension TargetPolicy {
    /// The confirmation stage's settings for a target under this policy:
    /// the rule's profile (else the agent's), then the rule's overrides.
    public func confirmationSettings(agentProfile: DetectorConfiguration.Profile) -> ConfirmationSettings {
        let profile = detectorProfile ?? agentProfile
        var settings = ConfirmationSettings(profile: profile)
        if let value = detectorOverrides.grace { settings.graceSeconds = value.secondsDouble }
        if let value = detectorOverrides.patience { settings.patienceSeconds = value.secondsDouble }
        if let value = detectorOverrides.horizon { settings.horizonSeconds = value.secondsDouble }
        return settings
    }
}
