package hypervisor

// faultPoint marks a step of Instantiate or Hydrate where a fault test may stop the process (see
// faultpoint_inject.go, built only with the faultinject tag); in every other build it does
// nothing.
var faultPoint = func(step string) {}
