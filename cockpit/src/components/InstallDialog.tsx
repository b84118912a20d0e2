// Install from an OCI reference or an https URL with the options of API.md. The call
// returns once the service accepted the source; the work then runs as a job, which the
// page lists with its progress, so the dialog closes right away.

import { useState } from "react";
import { Alert } from "@patternfly/react-core/dist/esm/components/Alert/index.js";
import { Button } from "@patternfly/react-core/dist/esm/components/Button/index.js";
import { Checkbox } from "@patternfly/react-core/dist/esm/components/Checkbox/index.js";
import { Form, FormGroup, FormHelperText } from "@patternfly/react-core/dist/esm/components/Form/index.js";
import { HelperText, HelperTextItem } from "@patternfly/react-core/dist/esm/components/HelperText/index.js";
import { Modal, ModalBody, ModalFooter, ModalHeader } from "@patternfly/react-core/dist/esm/components/Modal/index.js";
import { TextInput } from "@patternfly/react-core/dist/esm/components/TextInput/index.js";

import { type BootState, type CurrentBoot, concernsThisBoot } from "../api/contract";
import { describeFailure } from "../api/errors";
import type { ExtensionsService } from "../api/service";
import { isDigest, normalizeSource } from "../api/source";

export function InstallDialog(props: {
  service: ExtensionsService;
  states: BootState[];
  current: CurrentBoot;
  onClose: () => void;
}) {
  const { service, states, current, onClose } = props;
  const [source, setSource] = useState("");
  const [enable, setEnable] = useState<BootState[]>([]);
  const [now, setNow] = useState(false);
  const [replace, setReplace] = useState(false);
  const [digest, setDigest] = useState("");
  const [pending, setPending] = useState(false);
  const [error, setError] = useState("");
  const [tried, setTried] = useState(false);

  const normalized = normalizeSource(source);
  const digestValue = digest.trim().toLowerCase();
  const sourceError = normalized ? "" : "Enter where to install from.";
  const digestError = digestValue && !isDigest(digestValue) ? "A digest is sha256: followed by 64 hexadecimal digits." : "";
  const nowApplies = enable.some((s) => concernsThisBoot(s, current));

  const toggleState = (state: BootState, checked: boolean) =>
    setEnable((old) => (checked ? [...old.filter((s) => s !== state), state] : old.filter((s) => s !== state)));

  const submit = (event?: React.FormEvent) => {
    event?.preventDefault();
    setTried(true);
    if (sourceError || digestError) {
      return;
    }
    setPending(true);
    setError("");
    service
      .install(normalized, { enable, now: now && nowApplies, replace, digest: digestValue })
      .then(() => onClose())
      .catch((e: unknown) => {
        setError(describeFailure(e, "install"));
        setPending(false);
      });
  };

  return (
    <Modal variant="medium" isOpen onClose={onClose} aria-labelledby="install-title">
      <ModalHeader title="Install a system extension" labelId="install-title" />
      <ModalBody>
        <Form id="install-form" onSubmit={submit}>
          {error && <Alert variant="danger" isInline title={error} />}
          <FormGroup label="Source" isRequired fieldId="install-source">
            <TextInput
              id="install-source"
              value={source}
              onChange={(_e, value) => setSource(value)}
              isRequired
              placeholder="quay.io/kairos/k3s:v1.32 or https://example.com/k3s.raw"
              validated={tried && sourceError ? "error" : "default"}
              aria-describedby="install-source-help"
            />
            <FormHelperText>
              <HelperText id="install-source-help">
                <HelperTextItem variant={tried && sourceError ? "error" : "default"}>
                  {tried && sourceError
                    ? sourceError
                    : "An OCI reference (a reference without oci:// is taken as one) or an http(s) URL of an image."}
                </HelperTextItem>
              </HelperText>
            </FormHelperText>
          </FormGroup>
          <FormGroup label="Enable for" role="group" fieldId="install-enable" isStack>
            {states.map((state) => (
              <Checkbox
                key={state}
                id={`install-enable-${state}`}
                label={state}
                isChecked={enable.includes(state)}
                onChange={(_e, checked) => toggleState(state, checked)}
              />
            ))}
          </FormGroup>
          <FormGroup fieldId="install-now" role="group" label="Options" isStack>
            <Checkbox
              id="install-now"
              label="Apply now"
              description={
                nowApplies
                  ? "Merge it into the running system once it is installed."
                  : "Choose a boot state that applies to this boot (common, or the current Kairos boot state) to merge it now."
              }
              isChecked={now && nowApplies}
              isDisabled={!nowApplies}
              onChange={(_e, checked) => setNow(checked)}
            />
            <Checkbox
              id="install-replace"
              label="Replace an installed extension of the same name"
              isChecked={replace}
              onChange={(_e, checked) => setReplace(checked)}
            />
          </FormGroup>
          <FormGroup label="Expected digest" fieldId="install-digest">
            <TextInput
              id="install-digest"
              value={digest}
              onChange={(_e, value) => setDigest(value)}
              placeholder="sha256:…"
              validated={digestError ? "error" : "default"}
              aria-describedby="install-digest-help"
            />
            <FormHelperText>
              <HelperText id="install-digest-help">
                <HelperTextItem variant={digestError ? "error" : "default"}>
                  {digestError || "Optional. The install fails unless the image (or OCI manifest) has this digest."}
                </HelperTextItem>
              </HelperText>
            </FormHelperText>
          </FormGroup>
        </Form>
      </ModalBody>
      <ModalFooter>
        <Button variant="primary" type="submit" form="install-form" isLoading={pending} isDisabled={pending}>
          Install
        </Button>
        <Button variant="link" onClick={onClose} isDisabled={pending}>
          Cancel
        </Button>
      </ModalFooter>
    </Modal>
  );
}
